"""On-call delivery: the notifier follows the alerts topic and delivers each alert to the
configured receivers (webhook, Slack, PagerDuty, Alertmanager, file)."""
