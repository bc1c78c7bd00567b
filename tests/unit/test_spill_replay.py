"""The Ledger's spill-and-replay states: when events are spilled and when the spill is
replayed, on a clock the test holds (tokenledger/spill_replay.py)."""

from __future__ import annotations

from tokenledger.spill_replay import MAX_BACKOFF_S, SpillReplay

T = 1000.0  # a monotonic instant


def test_a_new_ledger_sends_directly_and_never_replays() -> None:
    states = SpillReplay(1.0)
    assert not states.spilling
    assert not states.replay_due(T + 3600)


def test_a_spill_left_by_an_earlier_process_is_replayed_at_once() -> None:
    states = SpillReplay(1.0, spilling=True)
    assert states.spilling
    assert states.replay_due(T)


def test_a_failed_delivery_spills_and_schedules_a_replay_after_the_retry_interval() -> None:
    states = SpillReplay(0.5)
    assert states.kafka_failed(T) is True
    assert states.spilling
    assert not states.replay_due(T + 0.499)
    assert states.replay_due(T + 0.5)


def test_more_failures_in_the_same_outage_neither_warn_again_nor_move_the_replay() -> None:
    states = SpillReplay(0.5)
    states.kafka_failed(T)
    assert states.kafka_failed(T + 0.4) is False
    assert states.next_replay == T + 0.5
    assert states.queue_full() is False


def test_a_full_queue_spills_and_leaves_the_replay_schedule_as_it_was() -> None:
    states = SpillReplay(1.0)
    assert states.queue_full() is True
    assert states.spilling
    assert states.next_replay == 0.0
    assert states.replay_due(T)  # the broker may answer: the replay is tried at once


def test_each_failed_replay_doubles_the_wait_up_to_the_cap() -> None:
    states = SpillReplay(1.0)
    states.kafka_failed(T)
    waits = []
    for _ in range(6):
        states.replay_failed(T)
        waits.append(states.next_replay - T)
    assert waits == [2.0, 4.0, 8.0, MAX_BACKOFF_S, MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert MAX_BACKOFF_S == 10.0
    assert states.spilling
    assert not states.replay_due(T + 9.999)
    assert states.replay_due(T + 10.0)


def test_a_replay_that_empties_the_spill_returns_to_direct_and_resets_the_backoff() -> None:
    states = SpillReplay(1.0)
    states.kafka_failed(T)
    for _ in range(3):
        states.replay_failed(T)  # backoff now 8 s
    assert states.replayed(spill_empty=True) is True
    assert not states.spilling
    assert not states.replay_due(T + 3600)
    states.queue_full()  # spilling again, without a fresh schedule
    states.replay_failed(T)
    assert states.next_replay == T + 2.0  # doubled from the reset 1 s, not from 8 s


def test_events_spilled_during_a_replay_are_replayed_at_the_next_turn() -> None:
    states = SpillReplay(1.0)
    states.kafka_failed(T)
    states.replay_failed(T)
    assert states.replayed(spill_empty=False) is False
    assert states.spilling
    assert states.replay_due(T)


def test_flush_hurries_a_pending_replay_but_does_not_start_one() -> None:
    direct = SpillReplay(1.0)
    direct.hurry()
    assert not direct.spilling and not direct.replay_due(T + 3600)

    spilling = SpillReplay(1.0)
    spilling.kafka_failed(T)
    spilling.replay_failed(T)
    assert not spilling.replay_due(T)
    spilling.hurry()
    assert spilling.replay_due(T)
