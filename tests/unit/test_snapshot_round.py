"""A round of snapshots encoded in one forked child (Snapshot.round)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from stream_learner.errors import SnapshotError
from stream_learner.forked_pickle import ForkedPickle
from stream_learner.snapshot import RoundShare, Snapshot, SnapshotPart
from stream_learner.state import decode


def _parts(states: dict[str, dict[str, Any]], forkable: Callable[[str], bool] = lambda key: True) -> list[SnapshotPart]:
    return [SnapshotPart(lambda key=key: dict(states[key]), key, "river", "none", state["n"], {0: state["n"]}, forkable(key)) for key, state in states.items()]


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The children forked for snapshots (one entry each)."""
    started: list[int] = []
    call = ForkedPickle.call.__func__  # type: ignore[attr-defined]

    def counted(cls: type[ForkedPickle], produce: Callable[[], bytes]) -> ForkedPickle:
        started.append(1)
        return call(cls, produce)

    monkeypatch.setattr(ForkedPickle, "call", classmethod(counted))
    return started


def test_a_round_forks_once_and_holds_each_state_as_it_was(forks: list[int]) -> None:
    states = {f"k{i}": {"n": i, "w": [i]} for i in range(50)}
    snaps = Snapshot.round(_parts(states), background=True)
    for state in states.values():
        state["w"].append("later")  # learning goes on while the child encodes
    assert len(forks) == 1 and all(isinstance(s.pickled, RoundShare) for s in snaps)
    assert [(s.key, s.events_seen, s.source_offsets) for s in snaps] == [(k, st["n"], {0: st["n"]}) for k, st in states.items()]
    assert [decode(s.payload) for s in reversed(snaps)] == [{"n": i, "w": [i]} for i in reversed(range(50))]
    assert snaps[3].payload == snaps[3].payload  # taken once, kept


def test_parts_that_may_not_fork_are_encoded_here_and_a_single_part_has_its_own_child(forks: list[int]) -> None:
    states = {"gpu": {"n": 1}, "a": {"n": 2}, "b": {"n": 3}}
    snaps = Snapshot.round(_parts(states, forkable=lambda key: key != "gpu"), background=True)
    assert isinstance(snaps[0].pickled, bytes) and len(forks) == 1
    assert [decode(s.payload)["n"] for s in snaps] == [1, 2, 3]
    [one] = Snapshot.round(_parts({"c": {"n": 4}}), background=True)
    assert isinstance(one.pickled, ForkedPickle) and decode(one.payload) == {"n": 4}
    assert all(isinstance(s.pickled, bytes) for s in Snapshot.round(_parts(states), background=False)) and len(forks) == 2


def test_the_child_is_reaped_once_every_share_is_taken_or_discarded() -> None:
    snaps = Snapshot.round(_parts({"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}}), background=True)
    child = snaps[0].pickled._encoding._forked._pid  # type: ignore[union-attr]
    snaps[0].discard()
    snaps[1].discard()
    assert Path(f"/proc/{child}").exists()  # running or exited, not reaped: one share is still to take
    assert decode(snaps[2].payload) == {"n": 3}
    assert not Path(f"/proc/{child}").exists()  # reaped
    with pytest.raises(SnapshotError, match="discarded"):
        snaps[0].payload  # noqa: B018
    everything_discarded = Snapshot.round(_parts({"a": {"n": 1}, "b": {"n": 2}}), background=True)
    child = everything_discarded[0].pickled._encoding._forked._pid  # type: ignore[union-attr]
    for snap in everything_discarded:
        snap.discard()
    assert not Path(f"/proc/{child}").exists()


def test_a_state_that_cannot_be_encoded_fails_every_share_of_its_round_with_the_reason() -> None:
    states: dict[str, dict[str, Any]] = {"a": {"n": 1}, "b": {"n": 2, "bad": object()}}
    snaps = Snapshot.round(_parts(states), background=True)
    for snap in snaps:
        with pytest.raises(SnapshotError, match="child process failed: TypeError"):
            snap.payload  # noqa: B018


def test_two_parts_of_one_key_in_a_round_keep_their_own_states() -> None:
    parts = [SnapshotPart(lambda n=n: {"n": n}, "k", "river", "none", n, {0: n}) for n in (1, 2)]
    assert [decode(s.payload) for s in Snapshot.round(parts, background=True)] == [{"n": 1}, {"n": 2}]


def test_a_round_lets_its_bytes_go_once_every_share_is_taken_or_given_up() -> None:
    states = {f"k{i}": {"n": i, "w": [i] * 100} for i in range(6)}
    snaps = Snapshot.round(_parts(states), background=True)
    encoding = snaps[0].pickled._encoding  # type: ignore[union-attr]
    assert [decode(s.payload) for s in snaps[:4]] == [states[f"k{i}"] for i in range(4)]
    assert isinstance(encoding._made, list) and encoding._forked is None  # two shares still to take: only their slices hold the round's bytes
    snaps[4].discard()
    assert decode(snaps[5].payload) == states["k5"]
    assert isinstance(encoding._made, SnapshotError)  # every share taken or given up: no slice pins the bytes


def test_a_round_whose_child_wrote_a_malformed_blob_fails_every_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stream_learner.snapshot.concatenated", lambda states: b"not a round")
    snaps = Snapshot.round(_parts({"a": {"n": 1}, "b": {"n": 2}}), background=True)
    for snap in snaps:
        with pytest.raises(SnapshotError, match="cut short or malformed"):
            _ = snap.payload
