"""Every user mistake is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.npm_registry import Mode, bad_registry
from tokenledger.streams.local.broker import free_port

SEPARATOR = "'/' is the scope separator and cannot be part of a name (use - or . instead)"


@pytest.mark.parametrize(
    ("args", "extra_env", "code", "starts"),
    [
        ([], {}, 2, "the following arguments are required: COMMAND"),
        (["kafka", "start", "--frobnicate"], {}, 2, "unrecognized arguments: --frobnicate"),
        (["kafka", "restart"], {}, 2, "argument action: invalid choice: 'restart'"),
        (["topics", "create", "--partitions", "0"], {}, 2, "--partitions must be at least 1"),
        (
            ["migrate"],
            {"TOKENLEDGER_CLICKHOUSE": "postgres://db"},
            2,
            "TOKENLEDGER_CLICKHOUSE='postgres://db' is not a ClickHouse DSN",
        ),
        (
            ["migrate"],
            {"TOKENLEDGER_CLICKHOUSE": "chdb://"},
            2,
            "TOKENLEDGER_CLICKHOUSE='chdb://' has no data path",
        ),
        (["migrate", "--database", "bad-name"], {}, 2, "database name 'bad-name' is not valid"),
        (
            ["topics", "list"],
            {"TOKENLEDGER_PARTITIONS": "lots"},
            2,
            "TOKENLEDGER_PARTITIONS='lots' is not a whole number",
        ),
        (
            ["kafka", "status"],
            {"TOKENLEDGER_KAFKA": "broker:9092"},
            2,
            "TOKENLEDGER_KAFKA=broker:9092 points at an external broker",
        ),
        (
            ["serve"],
            {"TOKENLEDGER_KAFKA_OPT_SSL_KEYSTORE_LOCATION": "/etc/edge.p12"},
            2,
            "TOKENLEDGER_KAFKA_OPT_SSL_KEYSTORE_LOCATION (ssl.keystore.location) has no equivalent "
            "in the edge's Kafka client (aiokafka)",
        ),
        (
            ["serve"],
            {
                "TOKENLEDGER_KAFKA_OPT_SECURITY_PROTOCOL": "SASL_SSL",
                "TOKENLEDGER_KAFKA_OPT_SASL_MECHANISM": "OAUTHBEARER",
            },
            2,
            "TOKENLEDGER_KAFKA_OPT_SASL_MECHANISM=OAUTHBEARER: the edge (aiokafka) supports PLAIN",
        ),
        (
            ["kafka", "acls", "--principal", "edge=alice"],
            {},
            2,
            "--principal 'edge=alice': write COMPONENT=User:NAME",
        ),
        (
            ["prices", "check", "--file", "/nonexistent/prices.json"],
            {},
            2,
            "cannot read price file",
        ),
        (["query", "no_such_query"], {}, 2, "no query named 'no_such_query'"),
        (
            ["query", "top_spenders", "--param", "limit=x"],
            {},
            2,
            "--param limit='x' is not a whole",
        ),
        (
            ["query", "top_spenders", "--param", "tenant=x"],
            {},
            2,
            "query top_spenders has no parameter tenant",
        ),
        (
            ["query", "cost_over_time", "--param", "dimension=a;b"],
            {},
            2,
            "--param dimension='a;b' is not a column",
        ),
        (
            ["query", "cost_by", "--param", "start=yesterday"],
            {},
            2,
            "--param start='yesterday' is not a time",
        ),
        (["query", "cost_by"], {}, 2, "database tokenledger does not exist at chdb://"),
        (["notify"], {}, 2, "no alert receiver is configured; set TOKENLEDGER_NOTIFY_WEBHOOK_URL"),
        (
            ["notify"],
            {"TOKENLEDGER_NOTIFY_SLACK_URL": "hooks.example/T0/B0/secret"},
            2,
            "TOKENLEDGER_NOTIFY_SLACK_URL must be an http:// or https:// URL",
        ),
        (
            ["notify"],
            {"TOKENLEDGER_NOTIFY_SLACK_URL": "https://hooks.example/T0/B0/sec ret"},
            2,
            "TOKENLEDGER_NOTIFY_SLACK_URL holds a space or a control character; percent-encode it",
        ),
        (
            ["notify", "--retries", "0"],
            {"TOKENLEDGER_NOTIFY_FILE": "alerts.jsonl"},
            2,
            "--retries must be at least 1",
        ),
        (["report", "--start", "yesterday"], {}, 2, "--start 'yesterday' is not a time"),
        (["serve"], {}, 2, "no API keys: make one with `tokenledger edge-key"),
        (["serve", "--keys", "/nonexistent/keys.json"], {}, 2, "cannot read the key file"),
        (
            ["serve"],
            {"TOKENLEDGER_EDGE_KEYS": '{"keys": 3}'},
            2,
            'TOKENLEDGER_EDGE_KEYS needs a "keys" list',
        ),
        (["serve", "--port", "0"], {}, 2, "--port must be 1..65535"),
        (
            ["edge-key", "--service", "checkout"],
            {},
            2,
            "the following arguments are required: --tenant",
        ),
        (
            ["notify", "--resend-interval", "0"],
            {"TOKENLEDGER_NOTIFY_FILE": "alerts.jsonl"},
            2,
            "--resend-interval must be 0.1 to 3600 seconds",
        ),
        (["report", "--start", "now", "--end=-1d"], {}, 2, "--start must be before --end"),
        (["report"], {}, 2, "database tokenledger does not exist at chdb://"),
        (["demo", "--requests-per-day", "5"], {}, 2, "--requests-per-day must be at least 100"),
        (["worker", "--dedup-hours", "0"], {}, 2, "--dedup-hours must be above 0"),
        (["budget", "rm", "--tenant", "team/a"], {}, 2, f"--tenant 'team/a': {SEPARATOR}"),
        (
            ["budget", "set", "--tenant", "acme", "--feature", "answer/v2", "--limit-usd", "5"],
            {},
            2,
            f"--feature 'answer/v2': {SEPARATOR}",
        ),
        (
            ["edge-key", "--service", "checkout", "--tenant", "acme/feature/answer"],
            {},
            2,
            f"--tenant 'acme/feature/answer': {SEPARATOR}",
        ),
        (
            ["edge-key", "--service", "check out", "--tenant", "acme"],
            {},
            2,
            "--service 'check out': ' ' cannot be part of a name (letters, digits and . _ : @ + - only)",
        ),
    ],
)
def test_usage_and_input_mistakes(
    cli_env: dict[str, str], args: list[str], extra_env: dict[str, str], code: int, starts: str
) -> None:
    one_line_error(tl({**cli_env, **extra_env}, *args), code, starts)


from tests.helpers.cli import one_line_error, tl


def test_unreachable_broker(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TOKENLEDGER_KAFKA": f"127.0.0.1:{free_port()}"}
    one_line_error(tl(env, "topics", "create"), 3, "no Kafka broker answers at 127.0.0.1:")


def test_unreachable_clickhouse_server(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TOKENLEDGER_CLICKHOUSE": f"http://127.0.0.1:{free_port()}"}
    done = tl(env, "migrate")
    one_line_error(done, 3, "ClickHouse at http://127.0.0.1:")
    assert "connection refused" in done.stderr


def test_missing_java(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {**cli_env, "PATH": str(tmp_path)}
    one_line_error(tl(env, "kafka", "start"), 2, "java not found on PATH")


def test_missing_maven_when_jars_are_not_cached(cli_env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = subprocess.run(["sh", "-c", "command -v java"], capture_output=True, text=True)
    (bin_dir / "java").symlink_to(os.path.realpath(java.stdout.strip()))
    env = {**cli_env, "PATH": str(bin_dir), "TOKENLEDGER_CACHE": str(tmp_path / "empty-cache")}
    one_line_error(tl(env, "kafka", "start"), 2, "mvn not found on PATH")


def test_port_taken_by_another_process(cli_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        env = {**cli_env, "TOKENLEDGER_KAFKA_PORT": str(s.getsockname()[1])}
        one_line_error(
            tl(env, "kafka", "start"), 2, f"port {s.getsockname()[1]} on 127.0.0.1 is taken"
        )


def test_schema_drift_check_exits_1(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = tl(cli_env, "schemas", "export", "--check", "--out", str(tmp_path))
    assert done.returncode == 1
    assert "differs from the models" in done.stderr and "Traceback" not in done.stderr
    assert tl(cli_env, "schemas", "export", "--out", str(tmp_path)).returncode == 0
    assert tl(cli_env, "schemas", "export", "--check", "--out", str(tmp_path)).returncode == 0


def test_a_limit_that_is_not_a_number_is_refused_before_kafka_is_asked(
    cli_env: dict[str, str],
) -> None:
    """sNaN used to raise InvalidOperation (a traceback) once the broker answered; no broker
    is running here, so the argument is checked first."""
    for limit in ("sNaN", "NaN", "-Infinity"):
        done = tl(cli_env, "budget", "set", "--tenant", "acme", f"--limit-usd={limit}")
        one_line_error(done, 2, f"--limit-usd {limit!r} is not an amount; write e.g. 50 or 12.50")


def test_a_folder_where_a_file_belongs_is_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    done = tl(cli_env, "report", "--out", str(folder))
    line = f"--out {folder} is a folder; name the file, e.g. --out {folder / 'report.html'}"
    one_line_error(done, 2, line)
    assert done.stderr == f"tokenledger: {line}\n"
    done = tl(
        cli_env, "edge-key", "--service", "checkout", "--tenant", "acme", "--add-to", str(folder)
    )
    line = (
        f"--add-to {folder} is a folder; name the key list file, e.g. "
        f"--add-to {folder / 'edge-keys.json'}"
    )
    assert (done.returncode, done.stderr, done.stdout) == (2, f"tokenledger: {line}\n", "")


def test_file_errors_are_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    dsn = f"chdb://{blocker}/clickhouse"
    done = tl({**cli_env, "TOKENLEDGER_CLICKHOUSE": dsn}, "migrate")
    assert (done.returncode, done.stderr) == (
        2,
        (
            f"tokenledger: TOKENLEDGER_CLICKHOUSE='{dsn}': cannot write the data path "
            f"{blocker}/clickhouse (Not a directory); point it at a folder you can write\n"
        ),
    )
    done = tl(cli_env, "schemas", "export", "--out", str(blocker / "json"))  # any other OSError
    assert (done.returncode, done.stderr) == (
        2,
        f"tokenledger: Not a directory: {blocker / 'json'}\n",
    )


def test_a_clickhouse_error_no_command_expected_is_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Another migration tool's schema_migrations (golang-migrate's columns) in the database."""
    home = Path(cli_env["TOKENLEDGER_HOME"])
    script = (
        "import clickhouse_connect, sys; c = clickhouse_connect.get_client(dsn=sys.argv[1]); "
        "c.command('CREATE DATABASE tokenledger'); c.command('CREATE TABLE "
        "tokenledger.schema_migrations (version Int64, dirty UInt8) ENGINE = MergeTree ORDER BY "
        "version')"
    )
    subprocess.run([sys.executable, "-c", script, f"chdb://{home / 'clickhouse'}"], check=True)
    done = tl(cli_env, "migrate", "--status")
    assert (done.returncode, done.stderr) == (
        2,
        (
            "tokenledger: ClickHouse refused the query: Unknown expression identifier `name`. In "
            "scope SELECT version, name, checksum FROM schema_migrations. (UNKNOWN_IDENTIFIER)\n"
        ),
    )


def test_serve_refuses_a_key_it_cannot_verify_with(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Before the broker is asked (none runs here): a short or malformed public key, or the
    retired shared key, is one line, never a traceback from the edge's budget book."""
    keys = tmp_path / "keys.json"
    keys.write_text(tl(cli_env, "edge-key", "--service", "checkout", "--tenant", "acme").stdout)
    for name, value, line in [
        (
            "TOKENLEDGER_PUBLIC_KEYS",
            "too-short",
            "key 1 in TOKENLEDGER_PUBLIC_KEYS is not a public key; write ed25519:<base64> as "
            "`tokenledger keys public KEYFILE` prints it",
        ),
        (
            "TOKENLEDGER_SIGNING_KEY",
            "too-short",
            "TOKENLEDGER_SIGNING_KEY (a shared HMAC key) is no longer read: readers take "
            "TOKENLEDGER_PUBLIC_KEYS, writers a private key file (docs/security.md, migrating "
            "from HMAC)",
        ),
    ]:
        done = tl({**cli_env, name: value}, "serve", "--keys", str(keys))
        assert (done.returncode, done.stderr) == (2, f"tokenledger: {line}\n"), name


@pytest.mark.parametrize(
    ("mode", "args", "line"),
    [
        (
            "hang",
            ["--timeout", "3"],
            "npm pack tiktoken@1.0.22 did not finish within 3s; check the network and npm's "
            "registry setting (`npm config get registry`), then run `tokenledger setup` again",
        ),
        (
            "incomplete",
            [],
            "npm pack tiktoken@1.0.22 failed (ECONNRESET: aborted); check the network and npm's "
            "registry setting (`npm config get registry`), then run `tokenledger setup` again",
        ),
    ],
)
def test_a_tiktoken_download_that_hangs_or_breaks_off_is_one_line(
    cli_env: dict[str, str], tmp_path: Path, mode: Mode, args: list[str], line: str
) -> None:
    from tokenledger.streams.local.tiktoken_ranks import NPM_PACKAGE

    with bad_registry(NPM_PACKAGE, mode) as registry:
        env = {
            **cli_env,
            "TOKENLEDGER_CACHE": str(tmp_path / "cache"),
            "npm_config_registry": registry.url,
            "npm_config_cache": str(tmp_path / "npm"),
        }
        done = tl(env, "setup", "--only", "tiktoken", *args, timeout=60)
        assert (done.returncode, done.stderr.splitlines()[-1:]) == (2, [f"tokenledger: {line}"])
        assert done.stderr.splitlines()[:-1] == [
            "fetching tiktoken rank files from the npm package tiktoken@1.0.22"
        ]
        assert registry.requests[-1] == "/tiktoken/-/tiktoken-1.0.22.tgz"  # it was the download
    assert not any((tmp_path / "cache" / "tiktoken").iterdir())  # nothing half-installed
