"""Settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError


def test_defaults_point_at_the_local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.home == tmp_path / ".tokenledger"
    assert s.cache == tmp_path / ".tokenledger" / "cache"
    assert s.kafka == "127.0.0.1:9092" and s.kafka_is_local
    assert s.clickhouse == f"chdb://{tmp_path / '.tokenledger' / 'clickhouse'}"
    assert (s.clickhouse_database, s.partitions, s.replication_factor) == ("tokenledger", 3, 1)


def test_external_kafka_and_overrides() -> None:
    s = Settings.from_env(
        {
            "TOKENLEDGER_KAFKA": "k1:9092,k2:9092",
            "TOKENLEDGER_PARTITIONS": "12",
            "TOKENLEDGER_CLICKHOUSE": "http://ch:8123",
            "TOKENLEDGER_KAFKA_PORT": "19092",
        }
    )
    assert s.kafka == "k1:9092,k2:9092" and not s.kafka_is_local
    assert s.partitions == 12 and s.clickhouse == "http://ch:8123" and s.kafka_port == 19092


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TOKENLEDGER_PARTITIONS": "many"}, "TOKENLEDGER_PARTITIONS='many' is not a whole number"),
        ({"TOKENLEDGER_PARTITIONS": "0"}, "TOKENLEDGER_PARTITIONS=0 is out of range; use 1..1000"),
        ({"TOKENLEDGER_KAFKA_PORT": "80"}, "TOKENLEDGER_KAFKA_PORT=80 is out of range"),
    ],
)
def test_bad_numbers_say_what_to_fix(env: dict[str, str], says: str) -> None:
    with pytest.raises(UserError) as err:
        Settings.from_env(env)
    assert str(err.value).startswith(says)


def test_cluster_ids_never_look_like_options() -> None:
    from tokenledger.streams.local.broker import new_cluster_id

    ids = [new_cluster_id() for _ in range(5000)]  # ~1 in 64 raw ids starts with '-'
    assert len(set(ids)) == 5000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
