"""`tokenledger retry-budget`: how many retries a tenant's route may make in a minute."""

from __future__ import annotations

import argparse

from tokenledger.streams.cli.base import Add
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError


def cmd_retry_budget(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.streams.admin import budgets as budget_admin
    from tokenledger.streams.admin import retry_budgets as admin

    if args.action == "list":
        budget_admin.authority()  # before the broker: a key mistake is one line at once
        held = admin.current(settings)
        for budget in held:
            print(admin.describe(budget))
        print(f"any other route: {admin.describe(None, '<tenant>', '<route>').split(': ', 1)[1]}")
        return 0
    if not args.tenant or args.route is None:
        raise UserError(f"retry-budget {args.action} needs --tenant and --route")
    if args.action == "rm":
        budget_admin.authority()
        if not admin.remove(settings, args.tenant, args.route):
            raise UserError(
                f"route {args.route!r} of {args.tenant} has no retry budget of its own (it has "
                "the defaults; see `tokenledger retry-budget list`)"
            )
        print(f"{admin.describe(None, args.tenant, args.route)} (the defaults again)")
        return 0
    budget = admin.make(args.tenant, args.route, args.percent, args.min_per_minute, args.max_usd)
    budget_admin.authority()
    admin.put(settings, budget)
    print(f"set {admin.describe(budget)}")
    return 0


def register(add: Add) -> None:
    p = add(
        "retry-budget",
        cmd_retry_budget,
        "set, list or remove the retry budget of a tenant's route (guards refuse retries "
        "beyond it)",
    )
    p.add_argument("action", choices=["set", "list", "rm"])
    p.add_argument("--tenant")
    p.add_argument("--route", help="the route the usage events carry ('' for none)")
    p.add_argument("--percent", help="retries allowed per first attempt, in percent (20)")
    p.add_argument("--min-per-minute", help="retries always allowed per minute (10)")
    p.add_argument("--max-usd", help="at most this many dollars of retries per minute")
