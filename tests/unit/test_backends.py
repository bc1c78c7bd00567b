"""Choosing the integration suite's backends: local by default, containers on request and
only where Docker answers, a clear error otherwise."""

from __future__ import annotations

import pytest

from tests.helpers.backends import CONTAINERS, LOCAL, BackendError, choose


def never() -> bool:
    raise AssertionError("Docker must not be asked when containers were not requested")


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", " 0 "])
def test_local_unless_containers_are_asked_for(value: str | None) -> None:
    env = {} if value is None else {"TOKENLEDGER_TEST_CONTAINERS": value}
    assert choose(env, never) is LOCAL


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_containers_when_asked_and_docker_answers(value: str) -> None:
    assert choose({"TOKENLEDGER_TEST_CONTAINERS": value}, lambda: True) is CONTAINERS


def test_asked_for_containers_without_docker_is_an_error_not_a_fallback() -> None:
    with pytest.raises(BackendError, match="no Docker engine answers.*unset TOKENLEDGER_TEST"):
        choose({"TOKENLEDGER_TEST_CONTAINERS": "1"}, lambda: False)


def test_a_flag_that_is_neither_yes_nor_no_is_an_error() -> None:
    with pytest.raises(BackendError, match="'maybe' is neither 1 nor 0"):
        choose({"TOKENLEDGER_TEST_CONTAINERS": "maybe"}, lambda: True)
