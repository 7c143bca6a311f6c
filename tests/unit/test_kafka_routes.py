"""The producer process memoises each key's Kafka partition exactly as kafka-python's default partitioner picks it."""

from __future__ import annotations

from kafka.partitioner.default import DefaultPartitioner

from connectors.kafka_producer import _Routes


class _Layout:
    """A topic's partitions, as the producer's metadata and the partitioner's cluster view both report them."""

    def __init__(self, partitions: set[int]) -> None:
        self.partitions = partitions

    def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_routes_match_the_default_partitioner_and_follow_a_topic_that_grows() -> None:
    layout = _Layout({0, 1, 2})
    routes = _Routes(layout, custom=False)  # type: ignore[arg-type]
    keys = [f"model-{i}".encode() for i in range(200)] + [b"", b"default"]
    for partitions in ({0, 1, 2}, {0, 1, 2, 3, 4, 5, 6}):
        layout.partitions = partitions
        route = routes.route("t")
        for key in keys * 2:  # the second time from the memo
            assert route(key) == DefaultPartitioner().partition("t", key, key, None, None, layout)
    assert route(None) is None  # no key: the producer's own sticky choice
    assert _Routes(layout, custom=True).route("t")(b"k") is None  # a user's partitioner decides  # type: ignore[arg-type]
