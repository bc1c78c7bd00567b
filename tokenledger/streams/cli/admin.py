"""Administration: topics, Kafka ACLs, ClickHouse migrations, the contract's JSON Schema and
budgets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tokenledger.streams.cli.base import Add, log
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError
from tokenledger.streams.redact import redact_dsn


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.contract.topics import TOPICS, TopicSpec
    from tokenledger.streams.admin.topics import create_topics, describe_topics

    specs = [TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in TOPICS]
    if args.action == "create":
        partitions = args.partitions or settings.partitions
        rf = args.replication_factor or settings.replication_factor
        for name, outcome in create_topics(settings.kafka, specs, partitions, rf).items():
            print(f"{outcome:8} {name}")
        return 0
    described = describe_topics(settings.kafka, [t.name for t in specs])
    for spec in specs:
        info = described.get(spec.name)
        if info is None:
            print(f"{spec.name}  missing (run `tokenledger topics create`)")
            continue
        extras = " ".join(f"{k}={v}" for k, v in sorted(info.items()) if k != "partitions")
        print(f"{spec.name}  partitions={info['partitions']} {extras}".rstrip())
    return 0


def cmd_kafka_acls(args: argparse.Namespace, settings: Settings) -> int:
    """Print the ACLs each component needs as kafka-acls.sh lines, or apply them."""
    from tokenledger.streams.admin import acls

    who = acls.principals(args.principal or [])
    chosen = acls.selected(settings, args.component or [])
    if not args.apply:
        print("\n".join(acls.commands(settings, chosen, who)))
        return 0
    total = acls.apply(settings, chosen, who)
    for component in chosen:
        count = sum(len(grant.operations) for grant in component.grants)
        print(f"{count:3} ACL(s) for {component.name} ({who[component.name]})")
    print(f"applied {total} ACL(s) on {settings.kafka}")
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.streams.sink import migrations
    from tokenledger.streams.sink.client import get_client

    database = args.database or settings.clickhouse_database
    client = get_client(settings.clickhouse, database, create=True)
    files = migrations.discover()
    if args.status:
        done = migrations.applied(client)
        for m in files:
            print(f"{'applied' if m.version in done else 'pending':8} {m.path.name}")
        return 0
    now = migrations.migrate(client, files, progress=log.info)
    print(
        f"{len(now)} migration(s) applied, {len(files) - len(now)} already applied "
        f"(database {database} at {redact_dsn(settings.clickhouse)})"
    )
    return 0


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.contract import export

    out = Path(args.out) if args.out else export.JSON_DIR
    if args.check:
        drifted = export.drift(out)
        if drifted:
            print(
                f"JSON Schema in {out} differs from the models: {', '.join(drifted)}; "
                "run `tokenledger schemas export`",
                file=sys.stderr,
            )
            return 1
        print(f"JSON Schema in {out} matches the models")
        return 0
    written = export.export(out)
    print(f"wrote {len(written)} schema files to {out}")
    return 0


def cmd_budget(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.streams.admin import budgets as budget_admin
    from tokenledger.streams.admin.topics import require_broker

    if args.action in ("set", "rm"):  # the names first: a mistake is told without a broker
        if not args.tenant:
            raise UserError(f"budget {args.action} needs --tenant")
        scope = budget_admin.scope_of(args.tenant, args.feature)
    new = None
    if args.action == "set":  # the amount too: sNaN or a typo is told without a broker
        if args.limit_usd is None:
            raise UserError("budget set needs --limit-usd, e.g. --limit-usd 50")
        new = budget_admin.make_budget(
            args.tenant, args.feature, args.limit_usd, args.window, args.tz, args.warn
        )
    budget_admin.authority()  # before the broker: a key mistake is one line at once
    require_broker(settings.kafka)
    if args.action == "list":
        budgets = budget_admin.current(settings)
        for budget in budgets:
            print(budget_admin.describe(budget))
        if not budgets:
            print("no budgets (set one with `tokenledger budget set`)")
        return 0
    if args.action == "resign":
        signed, key = budget_admin.resign(settings)
        print(f"published {len(signed)} budget(s) again, signed with key {key}")
        return 0
    if new is not None:
        budget_admin.put(settings, new)
        print(f"set {budget_admin.describe(new)}")
        return 0
    if not budget_admin.remove(settings, scope):  # rm, the one action left
        raise UserError(f"{scope} has no budget (see `tokenledger budget list`)")
    print(f"removed the budget of {scope}")
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Ed25519 keys: a private key file for a writer, public keys for every reader."""
    from tokenledger.signing import SigningKeyError, key_id, public_text
    from tokenledger.streams.admin import signer

    try:
        if args.action == "generate":
            if not args.out:
                raise UserError("keys generate needs --out FILE (where the private key goes)")
            public = signer.generate(Path(args.out))
            log.info(
                "wrote a private key to %s (key id %s, readable by you only); put the "
                "public key below in every TOKENLEDGER_PUBLIC_KEYS",
                args.out,
                key_id(public),
            )
            print(public_text(public))
            return 0
        if not args.files:
            raise UserError("keys public needs one or more key files")
        keys = [signer.load_public(Path(f)) for f in args.files]
    except SigningKeyError as exc:
        raise UserError(str(exc)) from None
    for name, public in zip(args.files, keys, strict=True):
        log.info("%s: key id %s", name, key_id(public))
    print(",".join(public_text(k) for k in keys))
    return 0


def register(add: Add) -> None:
    p = add("topics", cmd_topics, "create or list tokenledger's topics")
    p.add_argument("action", choices=["create", "list"])
    p.add_argument("--partitions", type=int, help="default: TOKENLEDGER_PARTITIONS or 3")
    p.add_argument("--replication-factor", type=int, help="default: TOKENLEDGER_REPLICATION or 1")
    p = add("migrate", cmd_migrate, "apply ClickHouse migrations (idempotent)")
    p.add_argument("--database", help="default: TOKENLEDGER_CLICKHOUSE_DATABASE or tokenledger")
    p.add_argument("--status", action="store_true", help="list applied and pending migrations")
    p = add("schemas", cmd_schemas, "export the message and row JSON Schema")
    p.add_argument("action", choices=["export"])
    p.add_argument("--out", help="folder (default: schemas/json in the source tree)")
    p.add_argument("--check", action="store_true", help="exit 1 if the files differ")
    p = add("budget", cmd_budget, "set, list or remove tenant and feature budgets")
    p.add_argument(
        "action",
        choices=["set", "list", "rm", "resign"],
        help="resign: publish every budget again with the current signing key",
    )
    p.add_argument("--tenant")
    p.add_argument("--feature")
    p.add_argument("--limit-usd", help="the limit per window in USD, e.g. 50 or 12.50")
    p.add_argument("--window", choices=["hour", "day", "week", "month"], default="day")
    p.add_argument("--tz", default="UTC", help="IANA timezone the window follows (UTC)")
    p.add_argument("--warn", default="50,80", help="warn thresholds in percent (50,80)")
    p = add("keys", cmd_keys, "signing keys: generate a private key, print public keys")
    p.add_argument(
        "action",
        choices=["generate", "public"],
        help="generate --out FILE: a new private key (prints its public key); "
        "public FILE...: the TOKENLEDGER_PUBLIC_KEYS value for these keys",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="key files (public)")
    p.add_argument("--out", metavar="FILE", help="where generate writes the private key")
