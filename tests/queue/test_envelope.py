"""The message format: versioned JSON envelopes in base64, split to fit Azure's 64 KiB limit."""

from __future__ import annotations

import base64
import json

import pytest

from dynamics_bridge.errors import InputError
from dynamics_bridge.queue import ENVELOPE_VERSION, decode_message, encode_messages
from tests.test_model import event


def events(n: int):
    return [event(event_id=f"swish-{i:032x}", reason_text="x" * 200) for i in range(n)]


def test_a_message_is_base64_of_a_versioned_json_envelope() -> None:
    (text,) = encode_messages(events(2))
    body = json.loads(base64.b64decode(text))
    assert body["v"] == ENVELOPE_VERSION
    assert [e["event_id"] for e in body["events"]] == [f"swish-{i:032x}" for i in range(2)]
    assert "enqueued_at" in body


def test_many_events_are_split_so_every_message_fits() -> None:
    texts = list(encode_messages(events(2000), max_bytes=64 * 1024))
    assert len(texts) > 1
    assert all(len(t.encode()) <= 64 * 1024 for t in texts)
    decoded = [e["event_id"] for t in texts for e in decode_message(t).events]
    assert decoded == [f"swish-{i:032x}" for i in range(2000)]


def test_a_smaller_limit_makes_more_messages() -> None:
    assert len(list(encode_messages(events(50), max_bytes=4096))) > len(
        list(encode_messages(events(50), max_bytes=64 * 1024))
    )


def test_an_event_too_large_for_any_message_is_refused() -> None:
    with pytest.raises(InputError, match="over the queue message limit"):
        list(encode_messages([event(reason_text="x" * 5000)], max_bytes=4096))


def test_decoding_gives_canonical_events_back() -> None:
    original = events(3)
    (text,) = encode_messages(original)
    assert decode_message(text).parsed_events() == original


def test_plain_json_without_base64_is_also_read() -> None:
    (text,) = encode_messages(events(1))
    assert decode_message(base64.b64decode(text).decode()).events[0]["event_id"]


def test_plain_json_text_keeps_swedish_letters() -> None:
    """The Functions host hands the queue function decoded text, not base64."""
    (text,) = encode_messages([event(reason_text="Täckning saknas")])
    plain = base64.b64decode(text).decode("utf-8")
    assert decode_message(plain).events[0]["reason_text"] == "Täckning saknas"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("%%%not base64%%%", "neither base64 nor JSON"),
        (base64.b64encode(b"not json").decode(), "not JSON"),
        (base64.b64encode(b'{"v": 99, "events": []}').decode(), "envelope version"),
        (base64.b64encode(b'{"v": 1}').decode(), "no 'events'"),
    ],
)
def test_undecodable_messages_are_input_errors(text: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        decode_message(text)
