"""What decoding an input record costs, against parsing its JSON, and what an Event costs, against a model's step; in one run.

    .venv/bin/python benchmarks/decoding.py [--features 8] [--repeat 3]

One record in the input contract (string id and key, ``--features`` numeric
features, a boolean label, a numeric ``ts``). Per record, the best of five
timings of 20,000 calls each: ``orjson.loads`` (the baseline), pydantic's
``InputEvent.model_validate`` of the parsed document, ``decode_event`` (the
engine's decoder: parse, the plain-shape shortcut, the length limits, the
:class:`~stream_learner.events.Event`), and building an ``Event`` alone;
then a river ``StandardScaler | LogisticRegression`` predict-and-learn step
on the same features. Each round prints the times and the ratios measured
back to back in that round; machine load moves the times, much less the ratios.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

import orjson
from river import linear_model, preprocessing

from stream_learner.events import Event, InputEvent, Origin, decode_event

CALLS = 20_000
STEPS = 2_000


def per_call(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call: the best of five timings of ``number`` calls."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    features = {f"f{i}": i * 0.5 for i in range(args.features)}
    raw = orjson.dumps({"id": "e1", "key": "k", "features": features, "label": True, "ts": 1.0})
    document = orjson.loads(raw)
    origin = Origin("in", 0, 1)
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for _ in range(1000):
        model.learn_one(features, True)

    def step() -> None:
        model.predict_proba_one(features)
        model.learn_one(features, True)

    for round_ in range(1, args.repeat + 1):
        parse = per_call(lambda: orjson.loads(raw), CALLS)
        validate = per_call(lambda: InputEvent.model_validate(document), CALLS)
        decode = per_call(lambda: decode_event(raw, origin), CALLS)
        event = per_call(lambda: Event("e1", "k", features, True, None, 0, 1, raw), CALLS)
        learn = per_call(step, STEPS)
        print(
            f"round {round_}: orjson.loads {parse * 1e6:.2f} µs; pydantic validation {validate * 1e6:.2f} µs = {validate / parse:.1f}x the parse; "
            f"decode_event {decode * 1e6:.2f} µs = {decode / parse:.1f}x the parse; Event() {event * 1e6:.3f} µs = "
            f"{100 * event / learn:.1f}% of a logreg predict+learn step ({learn * 1e6:.1f} µs)"
        )


if __name__ == "__main__":
    main()
