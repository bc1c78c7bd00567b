"""The edge service: `tokenledger serve`, and `tokenledger edge-key` to make its API keys."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tokenledger.signing import SigningKeyError
from tokenledger.streams.cli.base import Add, log
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the edge (HTTP + OTLP ingest, gateway checks) until SIGTERM or Ctrl-C."""
    from tokenledger.kafka_config import env_options
    from tokenledger.streams.admin.topics import require_broker
    from tokenledger.streams.edge import app as edge_app
    from tokenledger.streams.edge import checks, genai_spans
    from tokenledger.streams.edge.bodies import MIB, Limits
    from tokenledger.streams.edge.claims import ClaimSettings
    from tokenledger.streams.edge.credentials import broker_credentials
    from tokenledger.streams.edge.keys import ApiKeys

    if not 1 <= args.port <= 65535:
        raise UserError("--port must be 1..65535")
    if not 0.1 <= args.produce_timeout <= 300:
        raise UserError("--produce-timeout must be 0.1..300 seconds")
    if not 1 <= args.max_batch <= 100_000 or not 1 <= args.max_body_mib <= 1024:
        raise UserError("--max-batch must be 1..100000 and --max-body-mib 1..1024")
    if not 0 <= args.claims_max_wait <= 600 or not 60 <= args.claims_result_ttl <= 7 * 86400:
        raise UserError("--claims-max-wait must be 0..600 seconds, --claims-result-ttl 60..604800")
    if not 1 <= args.claims_max_result_kib <= 16 * 1024:
        raise UserError("--claims-max-result-kib must be 1..16384")
    credentials = broker_credentials(env_options())
    keys = ApiKeys.load(os.environ, Path(args.keys) if args.keys else None)
    try:
        public_keys = edge_app.public_keys(os.environ)
    except SigningKeyError as exc:
        raise UserError(str(exc)) from None
    mapping = (
        genai_spans.SpanMapping.from_file(Path(args.otlp_mapping))
        if args.otlp_mapping
        else genai_spans.SpanMapping()
    )
    require_broker(settings.kafka)
    config = edge_app.EdgeConfig(
        keys,
        host=args.host,
        port=args.port,
        mapping=mapping,
        limits=Limits(max_body_bytes=args.max_body_mib * MIB, max_events=args.max_batch),
        on_unavailable=args.on_unavailable,
        stale_after_s=args.stale_after,
        produce_timeout_s=args.produce_timeout,
        public_keys=public_keys,
        credentials=credentials,
        claims=ClaimSettings(
            max_wait_s=args.claims_max_wait,
            store_results_for=frozenset(args.claims_store_results or ()),
            max_result_bytes=args.claims_max_result_kib * 1024,
            result_ttl_s=args.claims_result_ttl,
        ),
        advertised_url=args.advertise_url,
        authz_headers=checks.AuthzHeaders(
            args.tenant_header.lower(),
            args.feature_header.lower(),
            args.route_header.lower(),
            args.cost_header.lower(),
        ),
    )
    app, _ = edge_app.build(settings, config)
    log.info("edge serving on http://%s:%d for %d API key(s)", args.host, args.port, len(keys))
    return edge_app.run(app)


def cmd_edge_key(args: argparse.Namespace, settings: Settings) -> int:
    """Make an API key: the key on stderr (hand it to the service), the key list on stdout."""
    from tokenledger.streams.edge import keys

    problem = keys.grant_problem(args.service, args.tenant)
    if problem is not None:
        raise UserError(f"--{problem}")
    key = keys.new_key()
    doc = {"keys": []} if args.add_to is None else _key_list(Path(args.add_to))
    doc["keys"].append(keys.entry(args.service, args.tenant, key))
    text = json.dumps(doc, indent=2) + "\n"
    if args.add_to is not None:
        Path(args.add_to).write_text(text)
        log.info("added a key for %s to %s", args.service, args.add_to)
    else:
        sys.stdout.write(text)
    print(
        f"API key for {args.service} (shown once, only its hash is stored): {key}", file=sys.stderr
    )
    return 0


def _key_list(path: Path) -> dict[str, list[object]]:
    from tokenledger.streams.edge.keys import ApiKeys

    if path.is_dir():
        raise UserError(
            f"--add-to {path} is a folder; name the key list file, e.g. "
            f"--add-to {path / 'edge-keys.json'}"
        )
    if not path.exists():
        return {"keys": []}
    text = path.read_text()
    ApiKeys.parse(text, str(path))  # refuse to extend a broken file
    doc: dict[str, list[object]] = json.loads(text)
    return doc


def register(add: Add) -> None:
    p = add("serve", cmd_serve, "run the edge: HTTP/OTLP ingest and budget checks for gateways")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="HTTP port (8787)")
    p.add_argument(
        "--keys",
        help="API key list (JSON); default TOKENLEDGER_EDGE_KEYS_FILE, "
        "or the list itself in TOKENLEDGER_EDGE_KEYS",
    )
    p.add_argument("--otlp-mapping", help="JSON file: span/resource attributes per dimension")
    p.add_argument("--max-batch", type=int, default=1000, help="events per CloudEvents batch")
    p.add_argument("--max-body-mib", type=int, default=5, help="request body limit (5 MiB)")
    p.add_argument(
        "--on-unavailable",
        choices=["open", "closed"],
        default="open",
        help="checks before the signals are read or when they are stale (open)",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        default=30.0,
        help="seconds without the broker before checks are degraded (30)",
    )
    p.add_argument(
        "--produce-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the broker's acknowledgement before answering 503 (10)",
    )
    p.add_argument(
        "--advertise-url",
        help="where other edge instances reach this one, to forward claims it owns "
        "(http://<host>:<port>)",
    )
    p.add_argument(
        "--claims-max-wait",
        type=float,
        default=60.0,
        help="longest ?wait= a claim may hold for an attempt in flight, seconds (60)",
    )
    p.add_argument(
        "--claims-store-results",
        action="append",
        metavar="FEATURE_OR_ROUTE",
        help="keep completed results of this feature or route for replay (repeat; '*' all); "
        "none by default",
    )
    p.add_argument(
        "--claims-max-result-kib",
        type=int,
        default=1024,
        help="largest stored result, KiB (1024)",
    )
    p.add_argument(
        "--claims-result-ttl",
        type=float,
        default=24 * 3600.0,
        help="seconds a completed claim (and its result) answers retries (86400)",
    )
    for name, default in (
        ("tenant", "x-tokenledger-tenant"),
        ("feature", "x-tokenledger-feature"),
        ("route", "x-tokenledger-route"),
        ("cost", "x-tokenledger-est-cost-usd"),
    ):
        p.add_argument(
            f"--{name}-header",
            default=default,
            help=f"/v1/authz reads the {name} from this request header ({default})",
        )
    k = add("edge-key", cmd_edge_key, "make an API key for the edge (prints the key once)")
    k.add_argument(
        "--service",
        required=True,
        help="the calling service's name; '*' for any (a collector's key)",
    )
    k.add_argument(
        "--tenant",
        action="append",
        required=True,
        help="a tenant it may report and ask for (repeat; '*' for all)",
    )
    k.add_argument(
        "--add-to", metavar="FILE", help="append to this key list instead of printing a new one"
    )
