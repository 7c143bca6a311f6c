"""Operators' commands: what is signed is obeyed, nothing else, and no record can make the decoder raise."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_learner.control import ACTIONS, CLOCK_SKEW, MAX_AGE, Command, decode_command, sign_command
from stream_learner.events import DeadLetter, Origin
from stream_learner.records import REASONS

KEY = b"operators-key"
AT = Origin("control", 0, 1)
NOW = 1_765_000_000.0

args_of_action = {
    "promote": st.text(min_size=1, max_size=20),
    "rollback": st.integers(min_value=1, max_value=10**9),
    "pause-learning": st.none(),
    "resume-learning": st.none(),
    "snapshot": st.none(),
}
commands = st.sampled_from(ACTIONS).flatmap(
    lambda action: st.builds(
        Command,
        id=st.text(min_size=1, max_size=40),
        key=st.text(min_size=1, max_size=40),
        action=st.just(action),
        arg=args_of_action[action],
        issued_at=st.floats(min_value=NOW - MAX_AGE, max_value=NOW + CLOCK_SKEW),
    )
)


@given(commands)
def test_a_signed_command_reads_back_as_it_was_sent(command: Command) -> None:
    assert decode_command(sign_command(command, KEY), AT, KEY, now=NOW) == command


@given(commands, st.sampled_from(("id", "key", "action", "arg", "issued_at")), st.data())
def test_a_signed_command_altered_in_any_field_is_refused(command: Command, field: str, data: st.DataObject) -> None:
    document = orjson.loads(sign_command(command, KEY))
    replacement = data.draw({"id": st.text(min_size=1, max_size=40), "key": st.text(min_size=1, max_size=40), "action": st.sampled_from(ACTIONS), "arg": st.one_of(st.none(), st.integers(1, 9), st.text(min_size=1, max_size=5)), "issued_at": st.floats(NOW - 10, NOW)}[field])
    if replacement == document[field]:
        return
    document[field] = replacement
    letter = decode_command(orjson.dumps(document), AT, KEY, now=NOW)
    assert isinstance(letter, dict) and letter["reason"] in ("bad_signature", "invalid_command")


@given(st.binary(max_size=300) | st.none())
def test_any_bytes_give_a_command_or_a_dead_letter_never_an_exception(raw: bytes | None) -> None:
    out = decode_command(raw, AT, KEY, now=NOW)
    if isinstance(out, dict):
        assert out["reason"] in REASONS
        DeadLetter.model_validate(out)
    else:
        assert isinstance(out, Command)


@given(st.dictionaries(st.sampled_from(("id", "key", "action", "arg", "issued_at", "signature", "other")), st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=10), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2))))
def test_any_json_object_gives_a_command_or_a_dead_letter(document: dict[str, object]) -> None:
    out = decode_command(orjson.dumps(document), AT, KEY, now=NOW)
    assert isinstance(out, Command) or out["reason"] in REASONS


def test_unsigned_wrongly_signed_and_stale_commands_are_refused_with_their_reason() -> None:
    command = Command("c-1", "k", "rollback", 3, issued_at=NOW)
    unsigned = orjson.loads(sign_command(command, KEY))
    del unsigned["signature"]
    assert decode_command(orjson.dumps(unsigned), AT, KEY, now=NOW)["reason"] == "unsigned_command"  # type: ignore[index]
    assert decode_command(sign_command(command, b"not-the-key"), AT, KEY, now=NOW)["reason"] == "bad_signature"  # type: ignore[index]
    assert decode_command(sign_command(command, KEY), AT, KEY, now=NOW + MAX_AGE + 1)["reason"] == "stale_command"  # type: ignore[index]
    assert decode_command(sign_command(command, KEY), AT, KEY, now=NOW + MAX_AGE) == command
    assert decode_command(sign_command(command, KEY), AT, KEY, now=NOW - CLOCK_SKEW - 1)["reason"] == "invalid_command"  # type: ignore[index]  # issued far ahead: would never go stale
    assert decode_command(sign_command(command, KEY), AT, KEY, now=NOW - CLOCK_SKEW) == command


@pytest.mark.parametrize(
    ("action", "arg"),
    [("rollback", 0), ("rollback", "3"), ("rollback", True), ("rollback", None), ("promote", ""), ("promote", 3), ("snapshot", 1), ("pause-learning", "x"), ("delete-everything", None)],
)
def test_a_command_whose_argument_does_not_fit_its_action_is_invalid(action: str, arg: object) -> None:
    document = {"id": "c", "key": "k", "action": action, "arg": arg, "issued_at": NOW, "signature": "0" * 64}
    letter = decode_command(orjson.dumps(document), AT, KEY, now=NOW)
    assert isinstance(letter, dict) and letter["reason"] == "invalid_command", letter


def test_a_control_record_that_is_not_json_or_not_an_object_is_an_invalid_command() -> None:
    assert decode_command(b"{not json", AT, KEY, now=NOW)["reason"] == "invalid_command"  # type: ignore[index]
    assert decode_command(b"[1, 2]", AT, KEY, now=NOW)["reason"] == "not_an_object"  # type: ignore[index]
    assert decode_command(None, AT, KEY, now=NOW)["reason"] == "tombstone"  # type: ignore[index]
