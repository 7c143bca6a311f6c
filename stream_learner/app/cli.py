"""The ``stream-learner`` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import traceback
from typing import Any, Sequence

from stream_learner.app.args import EXIT_USAGE, Parser, byte_count, non_negative_int


def build_parser() -> argparse.ArgumentParser:
    from stream_learner.drift import DETECTORS
    from stream_learner.events import MAX_RECORD_BYTES
    from stream_learner.learners.river import PRESETS

    parser = Parser(prog="stream-learner", description="Continual / online learning over event streams.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr (kafka-python's records from INFO up: its debug records hold passwords), and show an error's whole trace, Bytewax's Rust panic reports included")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser("run", help="run the engine on a source", description="Predict, then learn, on every event of a source.")
    run.add_argument("--source", default="synthetic:sea", help="synthetic:sea|agrawal|hyperplane|rbf[?every=N&concepts=K&width=W], file:PATH (JSONL), river:DATASET, or kafka (see the Kafka flags) (default: %(default)s)")
    run.add_argument("--model", default="logreg", help=f"a river preset ({', '.join(PRESETS)}), a dotted path to a river estimator, torch:mlp, torch:linear or torch:module:factory (default: %(default)s)")
    run.add_argument("--model-params", default=None, metavar="JSON", help="the model's parameters as a JSON object")
    run.add_argument("--strategy", default=None, help="continual-learning strategy: a name from `stream-learner strategies`, names joined by '+' (ewc+replay), or avalanche:DOTTED.PLUGIN (default: none)")
    run.add_argument("--strategy-param", action="append", default=[], metavar="K=V", help="a strategy parameter (value parsed as JSON when it can be, else a string); repeat for more; NAME.K=V targets one strategy of a combination")
    run.add_argument("--drift-detector", default="adwin", choices=[*DETECTORS, "none"], help="detector over the error stream (default: %(default)s)")
    run.add_argument("--drift-params", default=None, metavar="JSON", help="the detector's parameters as a JSON object")
    run.add_argument("--new-label-gap", type=non_negative_int, default=0, metavar="N", help="also mark a new concept where a label never seen before arrives, N or more labelled events after the last boundary: class-incremental streams, where a slow learner's error may not rise (default: 0, off)")
    run.add_argument("--max-events", type=non_negative_int, default=None, metavar="N", help="stop after N events")
    run.add_argument("--max-record-bytes", type=byte_count, default=MAX_RECORD_BYTES, metavar="N", help="the largest input record decoded; a larger one becomes a too_large dead letter with its first bytes, its size and SHA-256 (default: %(default)s, 1 MiB)")
    run.add_argument("--seed", type=int, default=42, help="seed of synthetic streams and seeded models (default: %(default)s)")
    run.add_argument("--out", default="out", metavar="DIR", help="predictions.jsonl, metrics.jsonl, dead_letters.jsonl and snapshots/ go here (default: %(default)s)")
    run.add_argument("--snapshot-dir", default=None, metavar="DIR", help="snapshot directory (default: OUT/snapshots)")
    run.add_argument("--resume", action="store_true", help="resume every model from its latest snapshot, and the source from where they stopped")
    run.add_argument("--workers", type=non_negative_int, default=1, help="Bytewax worker threads (default: %(default)s)")
    run.add_argument("--window", type=non_negative_int, default=1000, help="sliding accuracy window (default: %(default)s)")
    run.add_argument("--metrics-every", type=non_negative_int, default=1000, metavar="N", help="publish metrics every N labelled events (default: %(default)s)")
    run.add_argument("--snapshot-every", type=non_negative_int, default=0, metavar="N", help="also snapshot every N events (default: 0, by time only: --snapshot-seconds)")
    run.add_argument("--no-proba", action="store_true", help="leave class probabilities out of predictions")
    run.add_argument("--forgetting-every", type=non_negative_int, default=10_000, metavar="N", help="evaluate every concept's sample every N labelled events, 0 for only at boundaries and the end (default: %(default)s)")
    run.add_argument("--forgetting-sample", type=non_negative_int, default=100, metavar="N", help="labelled events sampled per concept for the forgetting metrics (default: %(default)s)")
    run.add_argument("--holdout", action="store_true", help="keep the sampled events out of training (default: they are learned too, test-then-train)")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no metrics lines on the console")
    run.add_argument("--json", action="store_true", help="print one JSON summary line on stdout at the end")
    run.set_defaults(handler=_run)
    from stream_learner.app import kafka_run, produce, snapshots_cmd

    kafka_run.add_arguments(run)
    produce.add_parser(commands)
    snapshots_cmd.add_parser(commands)
    strategies = commands.add_parser("strategies", help="list installed continual-learning strategies", description="Strategies registered under the stream_learner.strategies entry points: name, learner families, origin package, description.")
    strategies.set_defaults(handler=_strategies)
    from stream_learner.app import dashboard

    dashboard.add_run_arguments(run)
    dashboard.add_parser(commands)
    bench = commands.add_parser("bench", help="offline, seeded benchmarks", description="Offline, seeded benchmarks (see benchmarks/README.md).")
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=Parser)
    try:
        from benchmarks.forgetting import add_arguments as add_forgetting_arguments
    except ModuleNotFoundError as exc:  # an install without the checkout's benchmarks/: any arguments get the line that says so
        if exc.name != "benchmarks":
            raise
        add_forgetting_arguments = None
    not_here = {} if add_forgetting_arguments else {"prefix_chars": "\0", "add_help": False}  # "--jobs 2" is an argument too
    forgetting = benches.add_parser("forgetting", help="continual-learning strategies on standard scenarios: accuracy, forgetting, BWT, against Avalanche's own loop", description="Every registered strategy on Split-Digits (class- and task-incremental), Permuted-Digits, Split-MNIST-1D and river drift streams, streamed through the engine with oracle and drift-detected boundaries, next to Avalanche's own loop.", **not_here)
    if add_forgetting_arguments is None:
        forgetting.add_argument("arguments", nargs="*")
        forgetting.set_defaults(handler=_no_benchmarks)
    else:
        add_forgetting_arguments(forgetting)
        forgetting.set_defaults(handler=_bench_forgetting)
    return parser


def _bench_forgetting(args: argparse.Namespace) -> int:
    from benchmarks.forgetting import run_from_args

    return run_from_args(args)


def _no_benchmarks(args: argparse.Namespace) -> int:
    from stream_learner.errors import ConfigError

    raise ConfigError("the benchmarks run from a checkout of the repository, where benchmarks/ is (pip install -e '.[dev]'; make bench-forgetting): this install holds the service only")


def _run(args: argparse.Namespace) -> int:
    from stream_learner.app.dashboard import Serving

    with Serving(args, say=lambda line: print(line, file=sys.stderr, flush=True)) as serving:  # off unless asked
        args.telemetry = serving.telemetry  # a Telemetry (or None) for the run to feed
        return _run_engine(args)


def _run_engine(args: argparse.Namespace) -> int:
    from stream_learner.app.runner import RunOptions, run
    from stream_learner.drift import parse_detector_params
    from stream_learner.engine import EngineConfig
    from stream_learner.learners.base import LearnerSpec

    detector = None if args.drift_detector == "none" else args.drift_detector
    engine = EngineConfig(
        learner=LearnerSpec.parse(args.model, args.model_params, seed=args.seed, strategy=args.strategy, strategy_params=parse_strategy_params(args.strategy_param)),
        detector=detector,
        detector_params=parse_detector_params(args.drift_params),
        window=max(1, args.window),
        metrics_every=max(1, args.metrics_every),
        snapshot_every=args.snapshot_every,
        **({} if args.snapshot_seconds is None else {"snapshot_seconds": args.snapshot_seconds}),  # else EngineConfig's default
        with_proba=not args.no_proba,
        forgetting_every=args.forgetting_every,
        forgetting_sample=max(1, args.forgetting_sample),
        forgetting_holdout=args.holdout,
        new_label_gap=args.new_label_gap,
        max_record_bytes=args.max_record_bytes,
    )
    if args.source == "kafka":
        from stream_learner.app.kafka_run import run_from_args

        summary = run_from_args(args, engine)
        if summary is None:  # --print-settings
            return 0
        print(json.dumps(summary) if args.json else _describe(summary))
        return 0
    options = RunOptions(
        source=args.source,
        engine=engine,
        out=args.out,
        snapshot_dir=args.snapshot_dir,
        max_events=args.max_events,
        seed=args.seed,
        workers=max(1, args.workers),
        resume=args.resume,
        progress=not (args.quiet or args.json),
        console=not (args.quiet or args.json),
        telemetry=args.telemetry,
        rate=args.rate,
    )
    summary = run(options)
    if args.json:
        print(json.dumps(summary))
    else:
        print(_describe(summary))
    return 0


def parse_strategy_params(items: list[str]) -> dict[str, Any]:
    """``K=V`` strings to a dict; a value is JSON when it parses (``100``, ``true``, ``[1, 2]``), else a string.

    >>> parse_strategy_params(["ewc_lambda=100", "mode=online", "replay.mem_size=50"])
    {'ewc_lambda': 100, 'mode': 'online', 'replay.mem_size': 50}
    """
    from stream_learner.errors import ConfigError

    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--strategy-param needs K=V, got {item!r}")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def _strategies(args: argparse.Namespace) -> int:
    from strategies.registry import available, table

    print(table(available()))
    return 0


def _describe(summary: dict[str, Any]) -> str:
    accuracy = summary["accuracy"]
    quality = f"accuracy {accuracy:.4f}" if accuracy is not None else (f"MAE {summary['mae']:.4f}" if summary.get("mae") is not None else "no labels")
    return (
        f"done: {summary['events']:,} events ({summary['labelled']:,} labelled) in {summary['seconds']:.2f}s "
        f"= {summary['events_per_second'] or 0:,.0f} events/s\n"
        f"      {summary['predictions']:,} predictions, {summary['dead_letters']:,} dead letters, {quality}, "
        f"{summary['drifts']} drifts, {summary['concepts']} concepts, {summary['snapshots']} snapshots\n"
        f"{_describe_forgetting(summary.get('forgetting'))}"
        f"      outputs in {summary['out']}/"
    )


def _describe_forgetting(forgetting: dict[str, Any] | None) -> str:
    if not forgetting:
        return ""
    if forgetting.get("average_accuracy") is not None:
        average = f"average accuracy over {forgetting['concepts']} concepts {forgetting['average_accuracy']:.4f}"
    elif forgetting.get("average_mae") is not None:
        average = f"average MAE over {forgetting['concepts']} concepts {forgetting['average_mae']:.4f}"
    else:
        return ""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    return f"      forgetting: {average}, average forgetting {fmt(forgetting['average_forgetting'])}, BWT {fmt(forgetting['bwt'])}\n"


def _configure_logging(verbose: bool) -> None:
    """Log to stderr: debug details with ``--verbose``, else warnings and errors.

    kafka-python's records never show at DEBUG: its debug records print the
    client configuration and the SASL exchange, passwords included.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("kafka").setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; an error of ours is one line on stderr (with ``--verbose``, after the whole trace), exit status 2."""
    from stream_learner.app.execution import our_error, rust_panics_hidden

    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        with contextlib.nullcontext() if args.verbose else rust_panics_hidden():
            return args.handler(args)
    except KeyboardInterrupt:
        print("stream-learner: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        ours = our_error(exc)  # a sink's or a snapshot's error arrives wrapped in Bytewax's
        if ours is None:
            raise
        if args.verbose:
            traceback.print_exception(exc)
        print(f"stream-learner: error: {ours}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
