"""docker-compose.yml, Grafana provisioning and the Makefile agree with what the code reads."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
from typing import Any

import yaml

from tests.helpers.paths import ROOT
from tokenledger.streams.cli import commands, edge, services
from tokenledger.streams.config import Settings

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def host_ports(service: str) -> set[int]:
    return {int(str(p).split(":")[-2]) for p in SERVICES[service].get("ports", [])}


def settings_env_names() -> set[str]:
    source = "".join(
        (ROOT / f).read_text()
        for f in (
            "tokenledger/streams/config.py",
            "tokenledger/paths.py",
            "tokenledger/streams/alerts/receivers.py",
            "tokenledger/streams/edge/keys.py",
            "tokenledger/signing.py",
            "tokenledger/streams/admin/signer.py",
            "tokenledger/streams/admin/hmac_migration.py",
        )
    )
    return set(re.findall(r"\"(TOKENLEDGER_[A-Z_]+)\"", source))


def stage_commands() -> set[str]:
    """The long-running stages of the flow: every command tokenledger/streams/cli/services.py registers,
    and the edge's `serve`."""
    names: set[str] = set()

    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        names.add(name)
        return argparse.ArgumentParser()

    services.register(add)
    edge.register(add)
    return names - {"edge-key"}  # a one-off that makes a key, not a stage


def test_compose_has_the_stack() -> None:
    assert set(SERVICES) >= {"kafka", "clickhouse", "grafana", "init"}
    for name in ("kafka", "clickhouse", "grafana"):
        assert "healthcheck" in SERVICES[name], name


def test_host_ports_are_the_settings_defaults_and_loopback_only() -> None:
    defaults = Settings.from_env({})
    assert host_ports("kafka") == {defaults.kafka_port}
    assert host_ports("clickhouse") == {8123}
    assert host_ports("grafana") == {3000}
    for service in SERVICES.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_kafka_listeners_match_what_clients_are_given() -> None:
    env = SERVICES["kafka"]["environment"]
    advertised = dict(x.split("://") for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["EXTERNAL"] == Settings.from_env({}).kafka
    app_env = SERVICES["init"]["environment"]
    assert app_env["TOKENLEDGER_KAFKA"] == advertised["INTERNAL"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert SERVICES["kafka"]["image"].endswith(":" + _pinned_kafka())


def _pinned_kafka() -> str:
    from tokenledger.streams.local.broker import KAFKA_VERSION

    return KAFKA_VERSION


def test_app_services_read_only_known_settings() -> None:
    known = settings_env_names()
    for name in ("init", "grafana-user", "worker", "sink", "notifier", "edge"):
        env = SERVICES[name]["environment"]
        assert set(env) <= known, set(env) - known
        assert env["TOKENLEDGER_CLICKHOUSE"] == "http://clickhouse:8123"
        assert (
            env["TOKENLEDGER_CLICKHOUSE_DATABASE"]
            == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_DB"]
        )
        Settings.from_env(env)  # parses


def test_every_stage_of_the_flow_runs_in_compose() -> None:
    run = {service["command"][0] for service in SERVICES.values() if "command" in service}
    stages = stage_commands()
    assert stages >= {"worker", "sink", "notify", "serve"}
    assert stages - run == set(), "a stage of the flow has no docker-compose service"


def test_services_run_real_commands_and_dependencies_exist() -> None:
    for name in ("init", "worker", "sink"):
        assert SERVICES[name]["command"][0] in commands(), name
        assert "profiles" not in SERVICES[name]
    for service in SERVICES.values():
        for dep in service.get("depends_on", {}):
            assert dep in SERVICES
    assert SERVICES["notifier"]["profiles"] == ["alerts"]
    assert SERVICES["notifier"]["command"][0] in commands()
    assert SERVICES["edge"]["profiles"] == ["edge"]
    assert SERVICES["edge"]["command"][0] in commands()


def test_volumes_are_declared_and_bind_mounts_exist() -> None:
    declared = set(COMPOSE["volumes"])
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_dir(), source
            else:
                assert source in declared, source


def test_grafana_datasource_points_at_the_compose_clickhouse() -> None:
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/clickhouse.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "grafana-clickhouse-datasource"
    assert source["type"] in SERVICES["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert (source["jsonData"]["host"], source["jsonData"]["port"]) == ("clickhouse", 8123)
    assert (
        source["jsonData"]["defaultDatabase"]
        == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_DB"]
    )


def test_grafana_logs_in_as_the_read_only_user_compose_makes_for_it() -> None:
    """Not `default` (who may write and manage access): the user of
    clickhouse/access/grafana.sql, made by `tokenledger access grafana` before Grafana
    starts, with the one password both are given."""
    from tokenledger.streams.analytics.access import GRAFANA_USER
    from tokenledger.streams.config import GRAFANA_PASSWORD_ENV

    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/clickhouse.yml").read_text())
    (source,) = ds["datasources"]
    assert source["jsonData"]["username"] == GRAFANA_USER
    assert source["secureJsonData"] == {"password": f"${GRAFANA_PASSWORD_ENV}"}
    maker = SERVICES["grafana-user"]
    assert maker["command"] == ["access", "grafana"]
    assert maker["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    given = SERVICES["grafana"]["environment"][GRAFANA_PASSWORD_ENV]
    assert given == maker["environment"][GRAFANA_PASSWORD_ENV]
    assert given.startswith(f"${{{GRAFANA_PASSWORD_ENV}:?")  # compose refuses to start without it
    assert SERVICES["grafana"]["depends_on"] == {
        "grafana-user": {"condition": "service_completed_successfully"}
    }


def environment_names_read() -> set[str]:
    """Every environment variable the package names in its code, quoted: settings, the
    receivers, keys, the price file, tiktoken's cache, the worker's malloc cap, and the
    prefixes (ending in ``_``) of families such as ``TOKENLEDGER_KAFKA_OPT_<NAME>``."""
    pattern = re.compile(r"\"((?:TOKENLEDGER|TIKTOKEN|MALLOC)_[A-Z_]+)\"")
    return {n for p in (ROOT / "tokenledger").rglob("*.py") for n in pattern.findall(p.read_text())}


def test_every_setting_is_documented_in_the_operations_page() -> None:
    """docs/operations.md's Settings table is the one place a reader finds every variable."""
    page = (ROOT / "docs" / "operations.md").read_text()
    settings = page.split("## Settings (environment)")[1].split("\n## ")[0]
    names = environment_names_read()
    assert settings_env_names() <= names
    assert {"TOKENLEDGER_PRICES", "TOKENLEDGER_TOPIC_NAMESPACE", "TIKTOKEN_CACHE_DIR"} <= names
    missing = {n for n in names if (f"`{n}" if n.endswith("_") else f"`{n}`") not in settings}
    assert missing == set()
    assert len(dataclasses.fields(Settings)) >= 9


def test_make_help_lists_every_required_target() -> None:
    done = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    listed = {line.split()[1] for line in done.stdout.splitlines() if line.strip()}
    assert {"demo", "test", "bench", "lint", "up", "down"} <= listed


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
    picture = readme.split("```")[2].split("](")[1].split(")")[0]
    assert picture == "docs/report.png" and (ROOT / picture).stat().st_size > 50_000


def test_ci_runs_make_test() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [
        x for x in ci.splitlines() if x and not x.startswith("#") and not x.startswith("set ")
    ]
    assert commands[-1] == "make test"


def test_the_readme_gives_the_report_default_the_cli_has() -> None:
    from tokenledger.streams.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    start = sub.choices["report"].get_default("start")
    readme = (ROOT / "README.md").read_text()
    assert (start, f"`tokenledger report [--start={start}]" in readme) == ("-7d", True)


def _make_lint_commands() -> list[str]:
    """The recipe of `make lint`, with the Makefile's $(VENV) and $(BIN) spelled out."""
    makefile = (ROOT / "Makefile").read_text()
    names = dict(re.findall(r"^(VENV|BIN) := (.+)$", makefile, re.MULTILINE))
    recipe = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    commands = []
    for line in recipe:
        command = line.strip().removeprefix("@")
        for name in ("BIN", "VENV"):
            command = command.replace(f"$({name})", names[name])
        commands.append(command)
    return commands


def test_the_commit_hooks_run_make_lint() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (repo,) = config["repos"]
    assert repo["repo"] == "local"
    entries = [hook["entry"] for hook in repo["hooks"]]
    assert entries == _make_lint_commands()
    assert entries == [
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
        ".venv/bin/mypy",
    ]
    for hook in repo["hooks"]:
        assert (hook["language"], hook["pass_filenames"]) == ("system", False), hook["id"]
