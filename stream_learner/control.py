"""Operators' commands: signed JSON records on the control topic, checked before the engine obeys them.

A command names a model key, an action and its argument::

    {"id": "c-1", "key": "sensor-7", "action": "rollback", "arg": 3,
     "issued_at": 1765000000.0, "signature": "<hex>"}

A rollback names a snapshot version (``3``), or ``"concept:N"``: the
boundary version of concept N, the model that served that concept when it
last ended (see :data:`~stream_learner.snapshot.VersionKind`); the run
resolves it through its store (:attr:`Command.version`).

The signature is an HMAC-SHA256, with the operators' signing key, of the
other five fields as canonical JSON (sorted keys, no spaces): whoever can
write to the topic but does not hold the key cannot steer the models, and a
signed command cannot be altered. A command older than ``max_age`` seconds
when it is read is refused, so an old signed command replayed onto the topic
much later does nothing; a replay within that time is answered as a
duplicate by the learner step, which remembers the ids it applied.

Decoding never raises: a record that is not a well-formed, correctly signed,
fresh command is a dead letter with its reason.

>>> command = Command("c-1", "default", "pause-learning", None, issued_at=100.0)
>>> raw = sign_command(command, b"operators-key")
>>> decode_command(raw, Origin("control", 0, 7), b"operators-key", now=101.0) == command
True
>>> decode_command(raw, Origin("control", 0, 7), b"another-key", now=101.0)["reason"]
'bad_signature'
>>> decode_command(raw, Origin("control", 0, 7), b"operators-key", now=100.0 + 7200)["reason"]
'stale_command'
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal, get_args

import orjson

from stream_learner.events import MAX_RECORD_BYTES, Origin, dead_letter, load_object, refusal
from stream_learner.records import ControlDict, ControlStatus, DeadLetterDict

Action = Literal["promote", "rollback", "pause-learning", "resume-learning", "snapshot"]
ACTIONS: tuple[str, ...] = get_args(Action)
MAX_AGE = 3600.0
"""Seconds a command stays valid after ``issued_at`` (a stopped service may read it late; a replay weeks later must not act)."""
CLOCK_SKEW = 300.0
"""Seconds a command's ``issued_at`` may be ahead of the engine's clock (one issued far ahead would never go stale)."""
MAX_ID_LENGTH = 200
FIELDS = ("id", "key", "action", "arg", "issued_at")


@dataclass(frozen=True, slots=True)
class RawControl:
    """A control record's raw bytes (``None``: a tombstone) and where it came from."""

    value: bytes | None
    origin: Origin


@dataclass(frozen=True, slots=True)
class Command:
    """One operator's command for one model key.

    ``arg``: the candidate to promote, the snapshot version to roll back to
    (or ``"concept:N"``), ``None`` for the other actions. ``version``: not
    part of the signed command: the snapshot version a rollback installs,
    as the run resolved ``arg`` through its store (``None`` before, or where
    none is kept); the answer says it.
    """

    id: str
    key: str
    action: Action
    arg: str | int | None
    issued_at: float
    version: int | None = None


CONCEPT_PREFIX = "concept:"


def rollback_concept(arg: object) -> int | None:
    """The concept a rollback's ``arg`` names (``"concept:N"``), ``None`` for anything else (a version number).

    >>> rollback_concept("concept:2"), rollback_concept(3), rollback_concept("concept:x")
    (2, None, None)
    """
    if not isinstance(arg, str) or not arg.startswith(CONCEPT_PREFIX):
        return None
    number = arg.removeprefix(CONCEPT_PREFIX)
    return int(number) if number.isascii() and number.isdigit() else None


def control_answer(command: Command, status: ControlStatus, reason: str | None, at_event: int, now: float) -> ControlDict:
    """The ``control`` record answering ``command`` (:class:`~stream_learner.events.ControlAnswer`) when its key had seen ``at_event`` events.

    An applied rollback's says the version it installed.

    >>> control_answer(Command("c-1", "k", "promote", "arf", issued_at=0.0), "refused", "no candidate 'arf'", 12, now=5.0)["reason"]
    "no candidate 'arf'"
    """
    answer: ControlDict = {"type": "control", "key": command.key, "id": command.id, "action": command.action, "arg": command.arg, "status": status, "at_event": at_event, "ts": now}
    if reason is not None:
        answer["reason"] = reason
    if status == "applied" and command.version is not None:
        answer["version"] = command.version
    return answer


def no_version_kept(key: str, arg: object) -> str:
    """The refusal of a rollback to ``arg`` that the store keeps no version for.

    >>> no_version_kept("k", "concept:1")
    "model key 'k' keeps no boundary version of concept 1 (stream-learner snapshots list k shows the versions kept)"
    """
    concept = rollback_concept(arg)
    if concept is not None:
        return f"model key {key!r} keeps no boundary version of concept {concept} (stream-learner snapshots list {key} shows the versions kept)"
    return f"model key {key!r} has no snapshot version {arg}"


def sign_command(command: Command, signing_key: bytes) -> bytes:
    """The command as the record value to write on the control topic."""
    document: dict[str, Any] = {name: getattr(command, name) for name in FIELDS}
    document["signature"] = _signature(document, signing_key)
    return orjson.dumps(document)


def decode_command(
    raw: bytes | None, origin: Origin, signing_key: bytes, now: float, max_age: float = MAX_AGE, max_bytes: int = MAX_RECORD_BYTES
) -> Command | DeadLetterDict:
    """The command a control record holds, or its dead letter: malformed, unsigned, wrongly signed or stale."""
    document = load_object(raw, max_bytes)
    if raw is None or type(document) is not dict:
        return refusal(raw, origin, max_bytes, "command")
    signature = document.pop("signature", None)
    if signature is None:
        return dead_letter("unsigned_command", "control command without a signature: refused", raw, origin)
    problem = _problem(document)
    if problem is not None:
        return dead_letter("invalid_command", f"invalid control command: {problem}", raw, origin)
    if not isinstance(signature, str) or not hmac.compare_digest(signature, _signature(document, signing_key)):
        return dead_letter("bad_signature", "control command signed with another key, or altered: refused", raw, origin)
    age = now - document["issued_at"]
    if age < -CLOCK_SKEW:
        return dead_letter("invalid_command", f"control command issued {-age:,.0f} s in the future (clocks apart?): refused", raw, origin)
    if age > max_age:
        return dead_letter("stale_command", f"control command issued {age:,.0f} s ago, over the limit of {max_age:,.0f} s: refused", raw, origin)
    return Command(document["id"], document["key"], document["action"], document["arg"], float(document["issued_at"]))


def _signature(document: dict[str, Any], signing_key: bytes) -> str:
    canonical = orjson.dumps({name: document[name] for name in FIELDS}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(signing_key, canonical, hashlib.sha256).hexdigest()


def _problem(document: dict[str, Any]) -> str | None:
    """What is wrong with a command's fields (signature removed), if anything.

    >>> _problem({"id": "c", "key": "k", "action": "rollback", "arg": "3", "issued_at": 1.0})
    "rollback needs a snapshot version (an integer >= 1) or 'concept:N' (N >= 0) as arg, not '3'"
    >>> _problem({"id": "c", "key": "k", "action": "rollback", "arg": "concept:0", "issued_at": 1.0}) is None
    True
    >>> _problem({"id": "c", "key": "k", "action": "promote", "arg": "arf", "issued_at": 1.0, "extra": 1})
    "unknown fields: 'extra'"
    """
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        return "unknown fields: " + ", ".join(repr(name) for name in unknown)
    missing = [name for name in FIELDS if name not in document]
    if missing:
        return "missing fields: " + ", ".join(missing)
    for name in ("id", "key"):
        value = document[name]
        if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
            return f"{name} must be a string of 1 to {MAX_ID_LENGTH} characters"
    issued_at = document["issued_at"]
    if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
        return f"issued_at must be a Unix time in seconds, not {issued_at!r}"
    action, arg = document["action"], document["arg"]
    if action not in ACTIONS:
        return f"action must be one of {', '.join(ACTIONS)}, not {action!r}"
    if action == "rollback" and rollback_concept(arg) is None and (isinstance(arg, bool) or not isinstance(arg, int) or arg < 1):
        return f"rollback needs a snapshot version (an integer >= 1) or 'concept:N' (N >= 0) as arg, not {arg!r}"
    if action == "promote" and (not isinstance(arg, str) or not arg):
        return f"promote needs a candidate's name as arg, not {arg!r}"
    if action not in ("rollback", "promote") and arg is not None:
        return f"{action} takes no arg (null), not {arg!r}"
    return None
