"""``stream-learner snapshots list|show|restore|delete``: inspect and manage stored models.

Works on a local snapshot directory (``--dir``; without it and without a
Redis store in the settings, the embedded run's, ``OUT/snapshots``) or on
the Redis store of the settings (``--redis-url``, ``--app``); the listing
says which. Each version is of a kind (:data:`~stream_learner.snapshot.VersionKind`):
``regular`` (a resume point; ``latest`` names one) or ``boundary`` (the model
that served a concept, named, when it ended; for ``control rollback``)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Callable

from stream_learner.app.args import plain
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.metrics import Prequential
from stream_learner.slot import champion_state
from stream_learner.snapshot import SnapshotStore, VersionKind, latest_pointer, open_envelope, read_header
from stream_learner.state import decode


def add_parser(commands: Any) -> None:
    """The ``snapshots`` subcommand and its actions."""
    p = commands.add_parser("snapshots", help="list, show, restore or delete model snapshots", description=plain(__doc__.split("\n\n")[0]))
    actions = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=None, metavar="FILE", help="settings file (TOML or JSON)")
    common.add_argument("--redis-url", default=None, metavar="URL")
    common.add_argument("--app", default=None, help="application name (default: the settings' app)")
    common.add_argument("--dir", default=None, metavar="DIR", help="a local snapshot directory (default without Redis settings: the embedded run's, OUT/snapshots)")
    common.add_argument("--json", action="store_true", help="JSON output")

    listing = actions.add_parser("list", parents=[common], help="every model key and its versions")
    listing.add_argument("key", nargs="?", default=None, help="only this model key")
    show = actions.add_parser("show", parents=[common], help="one version's envelope header, verified")
    show.add_argument("key")
    show.add_argument("--version", type=int, default=None, help="default: latest")
    restore = actions.add_parser("restore", parents=[common], help="point latest at an older (verified) regular version")
    restore.add_argument("key")
    restore.add_argument("version", type=int)
    delete = actions.add_parser("delete", parents=[common], help="delete one version, or every version of a key")
    delete.add_argument("key")
    delete.add_argument("--version", type=int, default=None, help="default: every version")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed when not run from a terminal)")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    store, signing_key, where = _open(args)
    result = {"list": _list, "show": _show, "restore": _restore, "delete": _delete}[args.action](store, signing_key, args, where)
    if args.json:
        print(json.dumps(result))
    else:
        for line in _lines(args.action, result, where):
            print(line)
    return 0


def _open(args: argparse.Namespace) -> tuple[SnapshotStore, bytes | None, str]:
    """The store, the signing key, and where the store is, in words."""
    from stream_learner.app.stores import configured_signing_key, open_store
    from stream_learner.settings import load_settings

    overrides: dict[str, Any] = {}
    if args.redis_url:
        overrides["redis"] = {"url": args.redis_url}
    if args.app:
        overrides["app"] = args.app
    settings = load_settings(args.config, overrides)
    key = configured_signing_key(settings)
    directory = args.dir
    if directory is None and "url" not in settings.redis.model_fields_set:  # no Redis named anywhere: the embedded run's store
        directory = settings.run.snapshot_dir or str(Path(settings.run.out) / "snapshots")
    if directory is None:
        url = urllib.parse.urlsplit(settings.redis.url.get_secret_value())
        return open_store(settings), key, f"Redis {url.scheme}://{url.hostname}:{url.port or 6379}{url.path} (app {settings.app!r})"
    from connectors.local_store import LocalSnapshotStore

    if not Path(directory).is_dir():
        raise SnapshotError(f"no snapshot directory {directory}" + ("" if args.dir else " (the embedded run's; name one with --dir DIR, or Redis with --redis-url URL)"))
    local = LocalSnapshotStore(directory, app=settings.app, retain=settings.snapshot.retain)
    return local, key or local.signing_key(create=False), f"{directory} (app {settings.app!r})"


def _describe(store: SnapshotStore, key: str, version: int, signing_key: bytes | None, kind: VersionKind) -> dict[str, Any]:
    """One version: its kind (as the store files it; a boundary one with the concept its model served), its header, and whether it verifies."""
    info: dict[str, Any] = {"key": key, "version": version, "kind": kind, "bytes": None}
    try:
        blob = store.load(key, version)
        info["bytes"] = len(blob)
        header = read_header(blob)
        if kind == "boundary":
            info["concept"] = header.concept
        info.update(
            learner_kind=header.learner_kind,
            strategy=header.strategy,
            events_seen=header.events_seen,
            source_offsets=header.source_offsets,
            created_at=header.created_at,
            format_version=header.format_version,
        )
        if signing_key is None:
            info["verified"] = None
        else:
            _, payload = open_envelope(blob, signing_key=signing_key)
            info["verified"] = True
            info["model"] = _model(payload)
    except SnapshotError as exc:
        info["verified"] = False
        info["error"] = str(exc)
    return info


def _model(payload: bytes) -> str | None:
    """The model a verified snapshot's learner was built as (``None`` when its state cannot be read)."""
    try:
        return str(champion_state(decode(payload))["spec"]["model"])
    except (SnapshotError, KeyError, TypeError):
        return None


def _pointer(store: SnapshotStore, key: str) -> tuple[list[int], dict[str, Any]]:
    """A key's versions, and ``latest`` (``None`` when it names no stored regular version, then with the reason)."""
    versions = store.versions(key)
    boundaries = set(store.boundary_versions(key))
    latest, problem = latest_pointer(store, key, [v for v in versions if v not in boundaries])
    return versions, {"latest": latest} if problem is None else {"latest": None, "latest_error": problem}


def _kinds(store: SnapshotStore, key: str) -> Callable[[int], VersionKind]:
    """Each version's kind, as the store files it."""
    boundaries = set(store.boundary_versions(key))
    return lambda version: "boundary" if version in boundaries else "regular"


def _list(store: SnapshotStore, signing_key: bytes | None, args: argparse.Namespace, where: str) -> list[dict[str, Any]]:
    listing = []
    for k in [args.key] if args.key else store.keys():
        versions, pointer = _pointer(store, k)
        kind = _kinds(store, k)
        listing.append({"key": k, **pointer, "versions": [_describe(store, k, v, signing_key, kind(v)) for v in versions]})
    return listing


def _show(store: SnapshotStore, signing_key: bytes | None, args: argparse.Namespace, where: str) -> dict[str, Any]:
    """One version; by default ``latest``, or the newest stored version when the pointer is wrong; what its learner holds once it verifies."""
    versions, pointer = _pointer(store, args.key)
    if args.version is not None and args.version not in versions:
        raise SnapshotError(f"no snapshot version {args.version} for key {args.key!r}")
    version = args.version if args.version is not None else pointer["latest"] or (versions[-1] if versions else None)
    if version is None:
        raise SnapshotError(f"no snapshot for key {args.key!r}")
    info = _describe(store, args.key, version, signing_key, _kinds(store, args.key)(version))
    if info["verified"] and signing_key is not None:
        _, payload = open_envelope(store.load(args.key, version), signing_key=signing_key)
        try:
            info["learner"] = _learner_summary(decode(payload))
        except (SnapshotError, KeyError) as exc:
            info["learner_error"] = f"its learner state cannot be read: {exc}"
    return {**info, **pointer}


def _learner_summary(state: dict[str, Any]) -> dict[str, Any]:
    """What a learner's state says of it, read as data (its model is not loaded); of a key with challengers, its champion's, with the candidates' names."""
    served = champion_state(state)
    spec, concepts = served["spec"], served["concepts"]
    metrics = Prequential.from_state(served["metrics"])
    summary = {
        "model": spec["model"],
        "strategy": spec["strategy"],
        "events": served["events"],
        "labelled": metrics.labelled,
        "accuracy": metrics.accuracy,
        "mae": metrics.mae,
        "concept": concepts["concept"],
        "concepts": concepts["concepts"],
        "drifts": concepts["drifts"],
        "failures": served["failures"],
    }
    if served is not state:
        summary["candidates"] = [candidate["name"] for candidate in state["candidates"]]
        summary["champion"] = summary["candidates"][state["champion"]]
    return summary


def _restore(store: SnapshotStore, signing_key: bytes | None, args: argparse.Namespace, where: str) -> dict[str, Any]:
    if signing_key is None:
        raise SnapshotError("restoring needs the signing key, to verify the version first (STREAM_LEARNER_SNAPSHOT__SIGNING_KEY)")
    open_envelope(store.load(args.key, args.version), signing_key=signing_key)
    store.set_latest(args.key, args.version)
    return {"key": args.key, "latest": args.version}


def _delete(store: SnapshotStore, signing_key: bytes | None, args: argparse.Namespace, where: str) -> dict[str, Any]:
    what = f"every version of key {args.key!r}" if args.version is None else f"version {args.version} of key {args.key!r}"
    if not args.yes and not _confirmed(f"delete {what} from {where}?"):
        return {"key": args.key, "deleted": None}
    store.delete(args.key, args.version)
    return {"key": args.key, "deleted": "all" if args.version is None else args.version, **_pointer(store, args.key)[1]}


def _confirmed(question: str) -> bool:
    """Ask on the terminal; off a terminal nobody can answer: a :class:`ConfigError` says to give ``--yes``."""
    if not sys.stdin.isatty():
        raise ConfigError(f"snapshots delete would {question.rstrip('?')}: give --yes to confirm (no terminal to ask on)")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _lines(action: str, result: Any, where: str) -> list[str]:
    if action == "list":
        if not result:
            return [f"no snapshots in {where}"]
        lines = [f"snapshots in {where}:"]
        for entry in result:
            lines.append(f"{entry['key']}: latest {entry['latest']}" + (f" ({entry['latest_error']})" if "latest_error" in entry else ""))
            for v in entry["versions"]:
                mark = {True: "ok", False: f"INVALID: {v.get('error')}", None: "unverified"}[v["verified"]]
                model = f"{v.get('model') or '?'} ({v.get('strategy', '?')})"
                kind = f"boundary c{v.get('concept', '?')}" if v["kind"] == "boundary" else "regular"
                lines.append(f"  v{v['version']:<6} {kind:<12} {v.get('events_seen', '?'):>10} events  {v['bytes'] if v['bytes'] is not None else '-':>9} bytes  {model:<28} {mark}")
        return lines
    if action == "delete" and result["deleted"] is None:
        return ["nothing deleted"]
    return [json.dumps(result, indent=2)]
