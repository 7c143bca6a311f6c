"""The Redis snapshot store against a real Redis server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Iterator

import pytest

from connectors import redis_store
from connectors.redis_store import RedisSnapshotStore
from connectors.snapshot_writer import SnapshotWriter
from stream_learner.errors import SnapshotError
from stream_learner.snapshot import Snapshot, SnapshotStore, boundary_version, load_latest_valid, open_envelope, seal

pytestmark = pytest.mark.integration

SIGNING_KEY = b"test-signing-key"


@pytest.fixture
def store(redis_url: str, unique: str) -> Iterator[RedisSnapshotStore]:
    s = RedisSnapshotStore.from_url(redis_url, app=f"test-{unique}", retain=3)
    yield s
    for key in s.client.scan_iter(match=f"*test-{unique}*"):
        s.client.delete(key)


def _blob(events: int, key: str = "m") -> bytes:
    return seal(b"state-%d" % events, signing_key=SIGNING_KEY, key=key, learner_kind="river", strategy="none", events_seen=events, source_offsets={0: events})


def test_implements_the_store_protocol_with_retention(store: RedisSnapshotStore) -> None:
    assert isinstance(store, SnapshotStore)
    assert store.latest("m") is None and store.versions("m") == [] and store.keys() == []
    assert [store.save("m", _blob(i)) for i in range(5)] == [1, 2, 3, 4, 5]
    assert store.versions("m") == [3, 4, 5]  # the last 3 kept
    assert store.latest("m") == 5
    assert open_envelope(store.load("m", 4), signing_key=SIGNING_KEY)[0].events_seen == 3
    with pytest.raises(SnapshotError, match="no snapshot version 1"):
        store.load("m", 1)
    store.save("a:b/c d", _blob(1, "a:b/c d"))  # any key, separators included
    assert store.keys() == ["a:b/c d", "m"]


def test_set_latest_and_delete_keep_latest_valid(store: RedisSnapshotStore) -> None:
    for i in range(3):
        store.save("m", _blob(i))
    store.set_latest("m", 1)
    assert store.latest("m") == 1
    with pytest.raises(SnapshotError):
        store.set_latest("m", 9)
    store.delete("m", 1)  # latest pointed there: it moves to the newest left
    assert store.versions("m") == [2, 3] and store.latest("m") == 3
    with pytest.raises(SnapshotError):
        store.delete("m", 1)
    assert store.save("m", _blob(9)) == 4  # numbers never repeat
    store.delete("m")
    assert store.versions("m") == [] and store.latest("m") is None and store.keys() == []


def _boundary(events: int, concept: int) -> bytes:
    return seal(
        b"model-%d" % events, signing_key=SIGNING_KEY, key="m", learner_kind="river", strategy="none", events_seen=events, source_offsets={0: events}, kind="boundary", concept=concept
    )


def test_versions_are_filed_by_kind_and_latest_names_regular_ones_only(store: RedisSnapshotStore) -> None:
    assert store.save_many([("m", _blob(10)), ("m", _boundary(20, 0)), ("m", _blob(30))]) == [1, 2, 3]
    assert store.versions("m") == [1, 2, 3] and store.boundary_versions("m") == [2] and store.latest("m") == 3
    assert store.save("m", _boundary(40, 1)) == 4 and store.latest("m") == 3  # never latest
    for i, events in enumerate((50, 60, 70)):
        store.save_many([("m", _boundary(events, 2 + i)), ("m", _blob(events + 1))])
    # retain=3 of each kind: regular 6, 8, 10 and boundary 5, 7, 9
    assert store.versions("m") == [5, 6, 7, 8, 9, 10] and store.boundary_versions("m") == [5, 7, 9] and store.latest("m") == 10
    assert boundary_version(store, "m", 3) == 7 and boundary_version(store, "m", 0) is None
    with pytest.raises(SnapshotError, match="version 9 of key 'm' is a boundary version"):
        store.set_latest("m", 9)
    store.delete("m", 10)
    assert store.latest("m") == 8  # the newest regular one left
    store.delete("m", 9)
    assert store.boundary_versions("m") == [5, 7]
    for version in (6, 8):
        store.delete("m", version)
    assert store.latest("m") is None and store.keys() == ["m"]  # boundary versions left: the key stays listed
    assert load_latest_valid(store, "m", SIGNING_KEY) is None  # nothing to resume from
    store.delete("m")
    assert store.versions("m") == [] and store.keys() == []


def test_a_store_written_before_version_kinds_reads_as_regular(store: RedisSnapshotStore) -> None:
    k = store._keys("m")  # the layout of a release before version kinds: no boundaries set
    for version in (1, 2):
        store.client.set(f"{k['v']}{version}", _blob(version))
        store.client.zadd(k["versions"], {str(version): version})
    store.client.set(k["seq"], 2)
    store.client.set(k["latest"], 2)
    assert store.versions("m") == [1, 2] and store.boundary_versions("m") == [] and store.latest("m") == 2
    assert store.save("m", _boundary(3, 0)) == 3 and store.boundary_versions("m") == [3] and store.latest("m") == 2


def test_latest_never_points_at_a_missing_version_under_concurrent_writers(store: RedisSnapshotStore) -> None:
    other = RedisSnapshotStore.from_url(_url(store), app=store.app, retain=3)
    stop = threading.Event()
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            found = store.load_latest("m")
            if found is None:
                continue
            try:
                open_envelope(found[1], signing_key=SIGNING_KEY)
            except SnapshotError as exc:  # a retention race would surface here
                problems.append(str(exc))

    def write(s: RedisSnapshotStore) -> None:
        for i in range(150):
            s.save("m", _blob(i))

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(s,)) for s in (store, other)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert problems == []
    assert store.versions("m") == [298, 299, 300] and store.latest("m") == 300


def test_tampered_versions_are_refused_and_the_previous_valid_one_is_used(store: RedisSnapshotStore) -> None:
    for i in (10, 20, 30):
        store.save("m", _blob(i))
    v3 = f"{store._keys('m')['v']}3"
    store.client.set(v3, store.client.get(v3).replace(b"state-30", b"state-31"))  # payload altered
    v2 = f"{store._keys('m')['v']}2"
    blob = store.client.get(v2)
    forged = seal(b"state-20", signing_key=b"attacker", key="m", learner_kind="river", strategy="none", events_seen=20, source_offsets={0: 20})
    store.client.set(v2, forged)  # consistent checksum, wrong signature
    header, payload, refusals = load_latest_valid(store, "m", SIGNING_KEY)
    assert (header.events_seen, payload) == (10, b"state-10")
    assert "version 3" in refusals[0] and "checksum" in refusals[0]
    assert "version 2" in refusals[1] and "signature" in refusals[1]
    store.client.set(v2, blob)
    assert load_latest_valid(store, "m", SIGNING_KEY)[0].events_seen == 20


def test_background_writer_drains_on_close_and_keeps_the_newest(store: RedisSnapshotStore) -> None:
    saved: list[tuple[str, int | None]] = []
    writer = SnapshotWriter(store, SIGNING_KEY, lambda k, v: saved.append((k, v)))
    for i in range(1, 201):
        writer.submit([Snapshot("m", "river", "none", i, {0: i}, b"p%d" % i)])
    writer.close()
    header, payload, _ = load_latest_valid(store, "m", SIGNING_KEY)
    assert (header.events_seen, payload) == (200, b"p200")  # superseded ones may be skipped, the newest never
    assert saved and all(v is not None for _, v in saved)
    assert max(writer.submit_seconds) < 0.05  # the submitting (dataflow) thread never waits for Redis


def _url(store: RedisSnapshotStore) -> str:
    kw = store.client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def _fill(store: RedisSnapshotStore) -> None:
    """Versions 3, 4, 5 of key ``m`` (events seen 30, 40, 50), ``latest`` at 5."""
    for events in (10, 20, 30, 40, 50):
        store.save("m", _blob(events))
    assert store.versions("m") == [3, 4, 5] and store.latest("m") == 5


# every way the pointer can be wrong; the store falls back to the newest version that verifies
POINTER_CORRUPTIONS = {
    "deleted": lambda s, k: s.client.delete(k),
    "empty": lambda s, k: s.client.set(k, b""),
    "not a number": lambda s, k: s.client.set(k, b"five"),
    "below every version": lambda s, k: s.client.set(k, b"1"),
    "above every version": lambda s, k: s.client.set(k, b"99"),
}


@pytest.mark.parametrize("corruption", POINTER_CORRUPTIONS)
def test_a_wrong_pointer_falls_back_to_the_newest_valid_version(store: RedisSnapshotStore, corruption: str) -> None:
    _fill(store)
    POINTER_CORRUPTIONS[corruption](store, store._keys("m")["latest"])
    header, payload, refusals = load_latest_valid(store, "m", SIGNING_KEY)
    assert (header.events_seen, payload) == (50, b"state-50")
    [warning] = refusals
    assert "latest pointer of 'm'" in warning and "newest version that verifies" in warning
    assert store.save("m", _blob(60)) == 6 and store.latest("m") == 6  # the next save repairs the pointer


def test_a_version_missing_but_still_indexed_is_refused_and_listed_as_bad(store: RedisSnapshotStore, redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_learner.app.cli import main

    _fill(store)
    store.client.delete(f"{store._keys('m')['v']}5")  # the envelope is gone, the index and the pointer still name it
    header, _, refusals = load_latest_valid(store, "m", SIGNING_KEY)
    assert header.events_seen == 40 and len(refusals) == 1 and "no snapshot version 5" in refusals[0]
    store.client.set(store._keys("m")["latest"], b"x")
    monkeypatch.setenv("STREAM_LEARNER_SNAPSHOT__SIGNING_KEY", SIGNING_KEY.decode())
    assert main(["snapshots", "list", "--redis-url", redis_url, "--app", store.app, "--json"]) == 0
    [listing] = json.loads(capsys.readouterr().out)
    assert listing["latest"] is None and "is not a version number" in listing["latest_error"]
    assert [(v["version"], v["verified"]) for v in listing["versions"]] == [(3, True), (4, True), (5, False)]
    assert "no snapshot version 5" in listing["versions"][2]["error"]
    assert main(["snapshots", "show", "m", "--redis-url", redis_url, "--app", store.app, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["version"], shown["verified"]) == (5, False)  # the newest indexed, shown as bad


def test_load_latest_says_what_is_wrong_with_the_pointer(store: RedisSnapshotStore) -> None:
    _fill(store)
    latest = store._keys("m")["latest"]
    store.client.set(latest, b"five")
    with pytest.raises(SnapshotError, match="latest pointer of 'm' is not a version number"):
        store.load_latest("m")
    store.client.set(latest, b"99")
    assert store.load_latest("m") == (99, None)  # names a missing version: no envelope


def test_a_round_is_pipelined_in_bounded_batches_with_retention(store: RedisSnapshotStore, monkeypatch: pytest.MonkeyPatch) -> None:
    pipelines: list[bool] = []
    pipeline = store.client.pipeline
    monkeypatch.setattr(store.client, "pipeline", lambda transaction=True: pipelines.append(transaction) or pipeline(transaction=transaction))
    size = len(_blob(1, "k00"))  # give or take a byte of the time in it
    monkeypatch.setattr(redis_store, "PIPELINE_BYTES", 20 * size + size // 2)  # 20 envelopes a pipeline
    keys = [f"k{i:02d}" for i in range(100)]
    for events in range(1, 5):
        assert store.save_many([(k, _blob(events, k)) for k in keys]) == [events] * 100
    assert pipelines == [False] * 20  # 5 pipelines a round, none a MULTI/EXEC
    assert store.keys() == sorted(keys) and {tuple(store.versions(k)) for k in keys} == {(2, 3, 4)}
    version, blob = store.load_latest("k42") or (None, None)
    assert version == 4 and blob is not None and open_envelope(blob, signing_key=SIGNING_KEY)[0].events_seen == 4
    assert store.save_many([]) == []


def test_a_damaged_entry_of_a_round_is_refused_alone(store: RedisSnapshotStore) -> None:
    store.save_many([(k, _blob(1, k)) for k in "abc"])
    store.save_many([(k, _blob(2, k)) for k in "abc"])
    store.client.set(f"{store._keys('b')['v']}2", _blob(2, "b")[:-1] + b"!")
    found = {k: load_latest_valid(store, k, SIGNING_KEY) for k in "abc"}
    assert {k: (f[0].events_seen, len(f[2])) for k, f in found.items() if f} == {"a": (2, 0), "b": (1, 1), "c": (2, 0)}
    assert "version 2 of 'b' refused: snapshot checksum does not match" in found["b"][2][0]  # type: ignore[index]


_KILLED_WRITER = """
import sys
import redis
from connectors.redis_store import RedisSnapshotStore
from stream_learner.snapshot import seal

class Stalling(list):
    # a round whose items stop coming after the first pipeline: the parent kills the writer there
    def __iter__(self):
        for i, item in enumerate(list.__iter__(self)):
            if i == 500:
                print("stalled", flush=True)
                sys.stdin.read()
            yield item

store = RedisSnapshotStore(redis.Redis.from_url(sys.argv[1]), app=sys.argv[2], retain=3)
def blob(key, events):
    return seal(b"x" * 20_000, signing_key=b"test-signing-key", key=key, learner_kind="river", strategy="none", events_seen=events, source_offsets={0: events})
keys = [f"k{i:03d}" for i in range(600)]
store.save_many([(k, blob(k, 1)) for k in keys])
store.save_many(Stalling([(k, blob(k, 2)) for k in keys]))  # 8 MB pipelines: about 400 keys each
"""


def test_a_writer_killed_in_the_middle_of_a_round_leaves_every_key_at_a_complete_version(store: RedisSnapshotStore, redis_url: str) -> None:
    args = [sys.executable, "-c", _KILLED_WRITER, redis_url, store.app]
    with subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "stalled\n"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(30)
    loaded = {k: load_latest_valid(store, k, SIGNING_KEY) for k in store.keys()}
    assert len(loaded) == 600
    events = [found[0].events_seen if found and not found[2] else None for found in loaded.values()]
    assert set(events) == {1, 2} and events == sorted(events, reverse=True)  # the round's first pipeline saved, the rest at the round before


def test_never_snapshotted_names_exactly_the_keys_load_latest_valid_finds_nothing_for(store: RedisSnapshotStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.save("regular", _blob(1, "regular"))
    store.save("no pointer", _blob(1, "no pointer"))
    store.client.delete(store._keys("no pointer")["latest"])  # its versions stay
    store.save("boundary only", _boundary(1, 0))
    store.client.set(store._keys("dangling")["latest"], 7)  # a pointer, no version
    store.client.set(store._keys("damaged")["latest"], b"garbage")
    keys = ["fresh", "regular", "no pointer", "boundary only", "dangling", "damaged", "fresh too"]
    monkeypatch.setattr(redis_store, "LOOKUP_CHUNK", 2)  # several pipelines
    nothing = store.never_snapshotted(keys)
    assert nothing == {"fresh", "boundary only", "fresh too"}
    for key in keys:
        try:
            found = load_latest_valid(store, key, SIGNING_KEY)
        except SnapshotError:
            found = "refused"  # type: ignore[assignment]
        assert (found is None) == (key in nothing), key
