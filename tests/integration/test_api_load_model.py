"""stream_learner.load_model from Redis: the latest verified snapshot, a tampered one skipped for the one before."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import stream_learner
from connectors.local_store import LocalSnapshotStore
from connectors.redis_store import RedisSnapshotStore
from stream_learner.errors import StreamLearnerError

pytestmark = pytest.mark.integration


def test_a_model_loads_from_redis_and_a_tampered_version_falls_back(tmp_path: Path, redis_url: str) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    stream_learner.run("synthetic:sea", model="hoeffding_tree", max_events=1000, out=first)
    stream_learner.run("synthetic:sea", model="hoeffding_tree", max_events=3000, out=second)
    local = [LocalSnapshotStore(out / "snapshots") for out in (first, second)]
    signing_key = local[0].signing_key(create=False)
    app = f"api-test-{uuid.uuid4().hex}"  # a prefix of its own on the shared server
    redis = RedisSnapshotStore.from_url(redis_url, app=app)
    try:
        for store in local:
            redis.save("default", store.load("default", store.latest("default")))
        model = stream_learner.load_model(redis_url, app=app, signing_key=signing_key)
        assert model.metrics()["labelled"] == 3000
        newest = redis.latest("default")
        blob = bytearray(redis.load("default", newest))
        blob[-1] ^= 0xFF
        redis.delete("default", newest)
        redis.save("default", bytes(blob))  # the newest version, tampered
        assert stream_learner.load_model(redis_url, app=app, signing_key=signing_key).metrics()["labelled"] == 1000
        with pytest.raises(StreamLearnerError, match="no valid snapshot"):
            stream_learner.load_model(redis_url, app=app, signing_key=b"another key")
    finally:
        redis.delete("default")
