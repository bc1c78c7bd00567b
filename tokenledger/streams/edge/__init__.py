"""The edge: HTTP and OpenTelemetry ingest, and budget checks any gateway can call.

``tokenledger serve`` runs a Faust app (faust-streaming on aiokafka): its web views take
CloudEvents and OTLP spans and produce contract events (at-least-once; every event has a
deterministic ``event_id``, so the worker's exactly-once dedup absorbs retries), and an agent
follows the signals topic into the same ``SignalBook`` a Python ``BudgetGuard`` uses, so
``/v1/check`` and ``/v1/authz`` decide as the guard does. Modules, in the order a request
travels: keys (who may write), bodies (size limits, gzip), cloudevents_in, otlp_decode and
genai_spans (spans to usage events), checks (gateway questions), metrics, app (the Faust app
and its views), kafka (the Faust transport it runs on), credentials (its SASL/TLS settings).
"""
