"""Looking a source batch's new model keys up in Redis together (NewKeysAhead), against a fake store."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from stream_learner.app.stores import NewKeysAhead


class _Store:
    """Answers never_snapshotted from a set of keys with snapshots, and records what it was asked."""

    def __init__(self, stored: set[str], down: bool = False) -> None:
        self.stored, self.down, self.asked = stored, down, []  # type: ignore[var-annotated]

    def never_snapshotted(self, keys: Sequence[str]) -> set[str]:
        self.asked.append(list(keys))
        if self.down:
            raise redis.ConnectionError("Connection refused")
        return {key for key in keys if key not in self.stored}


def test_a_batch_s_new_keys_are_asked_about_once_together_and_each_answer_is_given_once() -> None:
    store = _Store(stored={"b"})
    ahead = NewKeysAhead(store)  # type: ignore[arg-type]
    ahead.ahead(["a", "b", "a", "c"])
    ahead.ahead(["a", "c", "d"])  # a and c were asked about already
    assert store.asked == [["a", "b", "c"], ["d"]]
    assert [ahead.nothing_stored(key) for key in "abcd"] == [True, False, True, True]
    assert [ahead.nothing_stored(key) for key in "acd"] == [False, False, False]  # once: the learner was made then
    ahead.ahead(["a", "b"])
    assert store.asked[-1] == ["d"] and len(store.asked) == 2  # nothing new: no round trip


def test_a_redis_that_does_not_answer_leaves_the_keys_to_their_own_reads() -> None:
    store = _Store(stored=set(), down=True)
    ahead = NewKeysAhead(store)  # type: ignore[arg-type]
    ahead.ahead(["a", "b"])
    assert store.asked == [["a", "b"]]
    assert not ahead.nothing_stored("a") and not ahead.nothing_stored("b")  # read one at a time, waiting for Redis
