"""The ``stream-learner`` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable, Sequence

from stream_learner.app.args import (
    EXIT_USAGE,
    STDIO,
    MergeParams,
    Parser,
    byte_count,
    json_object_argument,
    non_negative_int,
    positive_int,
    ratio_argument,
    strategy_param,
)

if TYPE_CHECKING:
    from stream_learner.engine import EngineConfig
    from stream_learner.settings import RunSettings, Settings
    from stream_learner.step.recurring import ConceptReuse


def build_parser() -> argparse.ArgumentParser:
    from stream_learner import __version__
    from stream_learner.app.run_settings import default_of
    from stream_learner.drift import DETECTORS
    from stream_learner.learners.river import PRESETS

    parser = Parser(prog="stream-learner", description="Continual / online learning over event streams.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr (kafka-python's records from INFO up: its debug records hold passwords), and show an error's whole trace, Bytewax's Rust panic reports included")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser(
        "run",
        help="run the engine on a source",
        description="Predict, then learn, on every event of a source. Every option can also come from the environment (STREAM_LEARNER_RUN__MODEL=arf) or a --config file ([run] model = \"arf\"); flags override the environment, which overrides the file.",
        argument_default=argparse.SUPPRESS,  # only the flags given override the environment and the config file
    )
    run.add_argument("--config", metavar="FILE", help="settings file (TOML or JSON): a [run] table for these options, [kafka], [redis], [snapshot], [recovery], [labels] for the deployment")
    run.add_argument("--print-settings", action="store_true", default=False, help="print the resolved settings (secrets masked) and exit")
    run.add_argument("--source", help=f"synthetic:sea|agrawal|hyperplane|rbf[?every=N&concepts=K&width=W], file:PATH (JSONL; file:- reads stdin), river:DATASET, or kafka (see the Kafka flags) (default: {default_of('source')})")
    run.add_argument("--model", help=f"a river preset ({', '.join(PRESETS)}), a dotted path to a river estimator, torch:mlp, torch:linear or torch:module:factory (default: {default_of('model')}, which learns binary, multi-class and string labels)")
    run.add_argument("--model-params", type=json_object_argument("model parameters", '{"l2": 0.01}'), metavar="JSON", help="the model's parameters as a JSON object")
    run.add_argument("--strategy", help="continual-learning strategy: a name from 'stream-learner strategies', names joined by '+' (ewc+replay), or avalanche:DOTTED.PLUGIN (default: none)")
    run.add_argument("--strategy-param", dest="strategy_params", type=strategy_param, action=MergeParams, metavar="K=V", help="a strategy parameter (value parsed as JSON when it can be, else a string); repeat for more; NAME.K=V targets one strategy of a combination")
    run.add_argument("--drift-detector", choices=[*DETECTORS, "none"], help=f"detector over the error stream (default: {default_of('drift_detector')})")
    run.add_argument("--drift-params", type=json_object_argument("drift detector parameters", '{"delta": 0.001}'), metavar="JSON", help="the detector's parameters as a JSON object")
    run.add_argument("--new-label-gap", type=non_negative_int, metavar="N", help="also mark a new concept where a label never seen before arrives, N or more labelled events after the last boundary: class-incremental streams, where a slow learner's error may not rise (default: 0, off)")
    run.add_argument("--max-events", type=non_negative_int, metavar="N", help="stop after N events")
    run.add_argument("--max-record-bytes", type=byte_count, metavar="N", help=f"the largest input record decoded; a larger one becomes a too_large dead letter with its first bytes, its size and SHA-256 (default: {default_of('max_record_bytes')}, 1 MiB)")
    run.add_argument("--max-features", type=positive_int, metavar="N", help=f"the most features a model key learns; an event whose new features would take it past N becomes a schema dead letter (default: {default_of('max_features')})")
    run.add_argument("--max-keys", type=positive_int, metavar="N", help=f"the most model keys each worker holds, in memory or evicted; the events of a key beyond them become too_many_keys dead letters (default: {default_of('max_keys'):,})")
    run.add_argument("--seed", type=int, help=f"seed of synthetic streams and seeded models (default: {default_of('seed')})")
    run.add_argument("--out", metavar="DIR", help=f"predictions.jsonl, metrics.jsonl, dead_letters.jsonl and snapshots/ go here (default: {default_of('out')})")
    run.add_argument("--predictions", metavar="FILE", help="where predictions go, one JSON object a line; - for stdout (default: OUT/predictions.jsonl)")
    run.add_argument("--snapshot-dir", metavar="DIR", help="snapshot directory (default: OUT/snapshots)")
    run.add_argument("--resume", action="store_true", help="resume every model from its latest snapshot, and the source from where they stopped")
    run.add_argument("--workers", type=positive_int, help=f"Bytewax worker threads (default: {default_of('workers')})")
    run.add_argument("--window", type=positive_int, help=f"sliding accuracy window, in labelled events (default: {default_of('window')})")
    run.add_argument("--metrics-every", type=positive_int, metavar="N", help=f"publish metrics every N labelled events (default: {default_of('metrics_every')})")
    run.add_argument("--snapshot-every", type=non_negative_int, metavar="N", help="also snapshot every N events (default: 0, by time only: --snapshot-seconds)")
    run.add_argument("--no-proba", action="store_true", help="leave class probabilities out of predictions")
    run.add_argument("--forgetting-every", type=non_negative_int, metavar="N", help=f"evaluate every concept's sample every N labelled events, 0 for only at boundaries and the end (default: {default_of('forgetting_every')})")
    run.add_argument("--forgetting-sample", type=non_negative_int, metavar="N", help=f"labelled events sampled per concept for the forgetting metrics; 0 turns forgetting tracking off (fleets: nothing kept or evaluated per key, the metrics' forgetting block stays empty) (default: {default_of('forgetting_sample')})")
    run.add_argument("--holdout", action="store_true", help="keep the sampled events out of training (default: they are learned too, test-then-train)")
    run.add_argument("--feature-drift", nargs="?", const={}, type=json_object_argument("feature drift parameters", '{"threshold": 0.2}'), metavar="JSON", help="watch the input features' distribution (PSI per feature), optionally with the monitor's parameters as a JSON object (window, every, threshold, bins, max_categories, max_features); each drift is a feature_drift record (default: off)")
    run.add_argument("--boundaries", choices=["error", "feature", "both"], help="which drifts start a new concept: the error detector's, the features' (--feature-drift), or both; task fields always do (default: error)")
    run.add_argument("--max-dead-letter-ratio", type=ratio_argument, metavar="R", help="exit with status 1 when more than this fraction of the events ended as dead letters (default: never; a run whose events are mostly dead letters always says so)")
    shadow = run.add_argument_group("challengers and earlier concepts")
    shadow.add_argument("--challenger", dest="challengers", action="append", metavar="SPEC", help="another learner per key in shadow, MODEL or MODEL+STRATEGY (torch:mlp+ewc): it predicts and learns every event, its metrics name it as candidate, and it replaces the champion when better on the same recent labelled events (repeatable)")
    shadow.add_argument("--challenger-params", dest="challenger_params", action="append", type=json_object_argument("challenger model parameters", '{"grace_period": 50}'), metavar="JSON", help="the model parameters of the challengers, in the order of --challenger (repeatable)")
    shadow.add_argument("--promotion-window", type=positive_int, metavar="N", help=f"labelled events per comparison of a challenger with the champion: each N both predicted are tested once (default: {default_of('promotion_window')})")
    shadow.add_argument("--promotion-alpha", type=float, metavar="P", help=f"significance of the paired test a challenger must pass, McNemar (Wilcoxon for regression), shared among the challengers (Bonferroni) (default: {default_of('promotion_alpha')})")
    shadow.add_argument("--min-champion-events", type=non_negative_int, metavar="N", help=f"labelled events a champion holds before it can be replaced, against flapping (default: {default_of('min_champion_events')})")
    shadow.add_argument("--auto-promote", action=argparse.BooleanOptionalAction, help="replace the champion when a challenger proves better; --no-auto-promote only recommends it, in a promotion record with applied false (default: on)")
    shadow.add_argument("--shadow-predictions", action="store_true", help="also write every challenger's predictions, each naming its candidate, to OUT/shadow_predictions.jsonl (Kafka runs: --shadow-topic)")
    shadow.add_argument("--reuse-concepts", type=non_negative_int, metavar="N", help="keep the models of the last N concepts and, at each new concept, reinstate one that proves better on its first labelled events: streams whose concepts recur (default: 0, off)")
    shadow.add_argument("--reuse-window", type=positive_int, metavar="N", help=f"labelled events of a new concept on which the stored models are tried (default: {default_of('reuse_window')})")
    shadow.add_argument("--reuse-alpha", type=float, metavar="P", help=f"significance of the paired test (McNemar; Wilcoxon for regression) a stored model must pass to come back, shared among the stored models and the looks (default: {default_of('reuse_alpha')})")
    shadow.add_argument("--reuse-looks", type=positive_int, metavar="N", help=f"how often during the window the test is read; more looks bring a model back sooner, each at a stricter level (default: {default_of('reuse_looks')})")
    shadow.add_argument("--reuse-checkpoint-every", type=non_negative_int, metavar="N", help="copy the live model every N labelled events, so that a detected drift stores the model as it was before the detector's delay (cheap for linear models; a tree is pickled whole each time) (default: 0, off)")
    run.add_argument("--max-resident-keys", type=non_negative_int, metavar="N", help="keep at most N model keys' learners in memory per worker: the others are written to the snapshot store (keys used less often first) and restored exactly on their next event (default: 0, no bound)")
    run.add_argument("--metrics-top-keys", type=positive_int, metavar="N", help=f"the first N model keys get their own Prometheus key label, every later key counts under key=\"other\", so a fleet cannot flood Prometheus (default: {default_of('metrics_top_keys')})")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no metrics lines on the console")
    run.add_argument("--json", dest="json_summary", action="store_true", help="print one JSON summary line at the end, on stdout (on stderr when the predictions go to stdout)")
    run.set_defaults(handler=_run)
    from stream_learner.app import control_cmd, kafka_run, produce, snapshots_cmd

    kafka_run.add_arguments(run)
    produce.add_parser(commands)
    control_cmd.add_parser(commands)
    snapshots_cmd.add_parser(commands)
    strategies = commands.add_parser("strategies", help="list installed continual-learning strategies, or show one's parameters", description="Strategies registered under the stream_learner.strategies entry points: name, learner families, origin package, description. With a NAME: that strategy's parameters, their defaults and one line each.")
    strategies.add_argument("name", nargs="?", metavar="NAME", help="show this strategy's parameters")
    strategies.set_defaults(handler=_strategies)
    from stream_learner.app import dashboard

    dashboard.add_run_arguments(run)
    dashboard.add_parser(commands)
    bench = commands.add_parser("bench", help="offline, seeded benchmarks", description="Offline, seeded benchmarks (see benchmarks/README.md).")
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=Parser)
    add_forgetting_arguments = _forgetting_arguments()
    not_here: dict[str, Any] = {} if add_forgetting_arguments is not None else {"prefix_chars": "\0", "add_help": False}  # "--jobs 2" is an argument too
    forgetting = benches.add_parser("forgetting", help="continual-learning strategies on standard scenarios: accuracy, forgetting, BWT, against Avalanche's own loop", description="Every registered strategy on Split-Digits (class- and task-incremental), Permuted-Digits, Split-MNIST-1D and river drift streams, streamed through the engine with oracle and drift-detected boundaries, next to Avalanche's own loop.", **not_here)
    if add_forgetting_arguments is None:
        forgetting.add_argument("arguments", nargs="*")
        forgetting.set_defaults(handler=_no_benchmarks)
    else:
        add_forgetting_arguments(forgetting)
        forgetting.set_defaults(handler=_bench_forgetting)
    return parser


def _forgetting_arguments() -> Callable[[argparse.ArgumentParser], None] | None:
    """The forgetting suite's argument builder, or ``None`` in an install without the checkout's benchmarks/ (any arguments then get the line that says so)."""
    try:
        from benchmarks.forgetting import add_arguments
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks":
            raise
        return None
    return add_arguments


def _bench_forgetting(args: argparse.Namespace) -> int:
    from benchmarks.forgetting import run_from_args

    writable_folder(args.out, "--out")  # before minutes of work, not after
    if args.readme is not None:
        writable_file(args.readme, "--readme")
    return run_from_args(args)


def writable_folder(path: str, flag: str) -> None:
    """Create ``path`` if needed and check a file can be written in it; else one :class:`ConfigError` line."""
    import tempfile

    from stream_learner.errors import ConfigError

    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write to {flag} {path}: {exc.strerror or exc}") from None


def writable_file(path: str, flag: str) -> None:
    """Check that the existing file ``path`` can be rewritten; else one :class:`ConfigError` line."""
    from stream_learner.errors import ConfigError

    try:
        with open(path, "r+b"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot rewrite {flag} {path}: {exc.strerror or exc}") from None


def _no_benchmarks(args: argparse.Namespace) -> int:
    from stream_learner.errors import ConfigError

    raise ConfigError("the benchmarks run from a checkout of the repository, where benchmarks/ is (pip install -e '.[dev]'; make bench-forgetting): this install holds the service only")


def _run(args: argparse.Namespace) -> int:
    from stream_learner.app.dashboard import Serving
    from stream_learner.app.dead_letters import EXIT_DEAD_LETTERS, dead_letter_warning, ratio_exceeded
    from stream_learner.app.run_settings import check_flags_fit_source, settings_from_args

    settings = settings_from_args(args)  # every option checked before any work
    check_flags_fit_source(args, settings.run.source)
    if args.print_settings:
        print(json.dumps(settings.masked(), indent=2))
        return 0
    engine = _engine_config(settings)
    options = settings.run
    args.metrics_top_keys = options.metrics_top_keys  # the flag, else the environment or the config file
    with Serving(args, say=say) as serving:  # off unless asked
        args.telemetry = serving.telemetry  # a Telemetry (or None) for the run to feed
        if serving.telemetry is not None:
            source = f"kafka:{settings.kafka.input_topic}" if options.source == "kafka" else options.source
            serving.telemetry.describe_run(source, engine)
        summary = _run_engine(args, settings, engine)
        # said before Serving lingers (--linger): the summary is there while the metrics can still be read
        if options.json_summary and options.predictions != STDIO:  # stdout carries machine output only: the predictions, or else the JSON summary
            print(json.dumps(summary), flush=True)
        else:
            say(json.dumps(summary) if options.json_summary else _describe(summary))
        warning = dead_letter_warning(summary)
        if warning:
            say(warning)
    exceeded = ratio_exceeded(summary, options.max_dead_letter_ratio)
    if exceeded:
        say(f"stream-learner: {exceeded}")
        return EXIT_DEAD_LETTERS
    return 0


def say(line: str) -> None:
    """A console line: on stderr, in every mode, so that stdout can carry predictions or the JSON summary."""
    print(line, file=sys.stderr, flush=True)


def _checked(settings: Settings) -> Settings:
    """``settings``, once the run options that the settings tree cannot check alone are checked (one-line :class:`ConfigError`)."""
    from stream_learner.drift import DETECTORS
    from stream_learner.errors import ConfigError

    o = settings.run
    if o.drift_detector not in (*DETECTORS, "none"):
        raise ConfigError(f"unknown drift detector {o.drift_detector!r} (run.drift_detector): use one of {', '.join([*DETECTORS, 'none'])}")
    if o.source == "kafka" and o.predictions is not None:
        raise ConfigError("--predictions is for runs without Kafka: a Kafka run's predictions go to its predictions topic (--predictions-topic)")
    if (o.shadow_predictions or (o.source == "kafka" and settings.kafka.shadow_topic)) and not o.challengers:
        raise ConfigError("shadow predictions (--shadow-predictions, --shadow-topic) are the challengers' predictions: add --challenger")
    if o.shadow_predictions and o.source == "kafka":
        raise ConfigError("a Kafka run publishes its challengers' predictions to --shadow-topic, not a file (--shadow-predictions)")
    return settings


def _engine_config(settings: Settings) -> EngineConfig:
    from stream_learner.api import challenger_specs
    from stream_learner.engine import EngineConfig
    from stream_learner.learners.base import LearnerSpec

    o = _checked(settings).run
    return EngineConfig(
        learner=LearnerSpec(o.model, dict(o.model_params), seed=o.seed, strategy=o.strategy, strategy_params=dict(o.strategy_params)),
        detector=None if o.drift_detector == "none" else o.drift_detector,
        detector_params=dict(o.drift_params),
        window=o.window,
        metrics_every=o.metrics_every,
        snapshot_every=settings.snapshot.every_events,
        snapshot_seconds=settings.snapshot.every_seconds,
        with_proba=not o.no_proba,
        forgetting_every=o.forgetting_every,
        forgetting_sample=o.forgetting_sample,
        forgetting_holdout=o.holdout,
        new_label_gap=o.new_label_gap,
        max_record_bytes=o.max_record_bytes,
        max_features=o.max_features,
        max_keys=o.max_keys,
        feature_drift=None if o.feature_drift is None else dict(o.feature_drift),
        boundaries=o.boundaries,
        challengers=challenger_specs(o.challengers, o.challenger_params, o.seed),
        promotion_window=o.promotion_window,
        promotion_alpha=o.promotion_alpha,
        min_champion_events=o.min_champion_events,
        auto_promote=o.auto_promote,
        shadow_predictions=o.shadow_predictions if o.source != "kafka" else settings.kafka.shadow_topic is not None,
        concept_reuse=_concept_reuse(o) if o.reuse_concepts else None,
    )


def _concept_reuse(o: RunSettings) -> ConceptReuse:
    """The concept reuse the run options ask for (``--reuse-*``)."""
    from stream_learner.step.recurring import ConceptReuse

    return ConceptReuse(size=o.reuse_concepts, window=o.reuse_window, alpha=o.reuse_alpha, looks=min(o.reuse_looks, o.reuse_window), checkpoint_every=o.reuse_checkpoint_every)


def _run_engine(args: argparse.Namespace, settings: Settings, engine: EngineConfig) -> dict[str, Any]:
    from stream_learner.app.runner import RunOptions, run
    from stream_learner.app.stores import configured_signing_key

    o = settings.run
    console = not (o.quiet or o.json_summary)
    if o.source == "kafka":
        from stream_learner.app.kafka_run import run_from_args

        return run_from_args(args, settings, engine, println=say if console else None)
    options = RunOptions(
        source=o.source,
        engine=engine,
        out=o.out,
        predictions=o.predictions,
        snapshot_dir=o.snapshot_dir,
        app=settings.app,
        max_events=o.max_events,
        seed=o.seed,
        workers=o.workers,
        resume=o.resume,
        progress=console,
        console=console,
        retain=settings.snapshot.retain,
        signing_key=configured_signing_key(settings),
        telemetry=args.telemetry,
        rate=args.rate or 0.0,
        max_resident_keys=o.max_resident_keys,
        lost_state=settings.snapshot.lost_state,
    )
    return run(options)


def _strategies(args: argparse.Namespace) -> int:
    if args.name is not None:
        from stream_learner.app.strategy_help import describe_strategy

        print(describe_strategy(args.name))
        return 0
    from strategies.registry import available, table

    print(table(available()))
    return 0


def _describe(summary: dict[str, Any]) -> str:
    from stream_learner.app.console import format_fleet

    accuracy = summary["accuracy"]
    quality = f"accuracy {accuracy:.4f}" if accuracy is not None else (f"MAE {summary['mae']:.4f}" if summary.get("mae") is not None else "no labels")
    fleet = format_fleet(summary)  # empty for a single key
    return (
        f"done: {summary['events']:,} events ({summary['labelled']:,} labelled) in {summary['seconds']:.2f}s "
        f"= {summary['events_per_second'] or 0:,.0f} events/s\n"
        f"      {summary['predictions']:,} predictions, {summary['dead_letters']:,} dead letters, {quality}, "
        f"{summary['drifts']} drifts, {summary['concepts']} concepts, {summary['snapshots']} snapshots{_describe_extras(summary)}\n"
        f"{_describe_latency(summary.get('latency'))}"
        f"{_describe_forgetting(summary.get('forgetting')) if summary['labelled'] else ''}"
        f"{fleet + chr(10) if fleet else ''}"
        f"      outputs in {summary['out']}/"
    )


def _describe_latency(latency: dict[str, Any] | None) -> str:
    """The done line's latency, event in to prediction out, where predictions were made.

    >>> _describe_latency({"events": 3000, "p50_seconds": 0.0438, "p99_seconds": 0.0985})
    '      latency (event in to prediction out): p50 43.8 ms, p99 98.5 ms\\n'
    >>> _describe_latency({"events": 0, "p50_seconds": None, "p99_seconds": None}), _describe_latency(None)
    ('', '')
    """
    if not latency or not latency["events"]:
        return ""
    return f"      latency (event in to prediction out): p50 {latency['p50_seconds'] * 1000:.1f} ms, p99 {latency['p99_seconds'] * 1000:.1f} ms\n"


def _describe_extras(summary: dict[str, Any]) -> str:
    """What the done line says only where it happened: promotions, feature drifts, model failures.

    >>> _describe_extras({"feature_drifts": 2, "failures": 1}), _describe_extras({"failures": 0})
    (', 2 feature drifts, 1 model failures (see the log)', '')
    >>> _describe_extras({"promotions": 1, "promotion_recommendations": 0})
    ', 1 promotions'
    """
    extras = ""
    if summary.get("promotions"):
        extras += f", {summary['promotions']:,} promotions"
    if summary.get("promotion_recommendations"):
        extras += f", {summary['promotion_recommendations']:,} recommended promotions"
    if summary.get("concepts_reused"):
        extras += f", {summary['concepts_reused']:,} concepts reused"
    if summary.get("feature_drifts"):
        extras += f", {summary['feature_drifts']:,} feature drifts"
    if summary.get("failures"):
        extras += f", {summary['failures']:,} model failures (see the log)"
    return extras


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
