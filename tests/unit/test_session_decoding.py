"""The warm session's message decoding (kernel/session.py ``decode``): what jupyter_client's own
``Session.deserialize`` gives, with the same refusals, but without parsing header dates.

Real jupyter_client Sessions on both ends; no kernel is needed to make or read a message.
"""

from __future__ import annotations

import uuid

import pytest
from jupyter_client.session import Session

from jupyter_containers.kernel.session import decode


def _pair() -> tuple[Session, Session, Session]:
    key = uuid.uuid4().hex.encode()
    return Session(key=key), Session(key=key), Session(key=key)


def _frames(sender: Session, msg_type: str, content: dict, parent: dict | None = None) -> list[bytes]:
    msg = sender.msg(msg_type, content, parent=parent or {})
    return [b"topic", *sender.serialize(msg)]


@pytest.mark.parametrize(
    ("msg_type", "content"),
    [
        ("stream", {"name": "stdout", "text": "hello\n"}),
        ("execute_result", {"data": {"text/plain": "42"}, "metadata": {}, "execution_count": 3}),
        ("display_data", {"data": {"text/html": "<b>x</b>", "text/plain": "x"}, "metadata": {}, "transient": {}}),
        ("error", {"ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": ["tb"]}),
        ("status", {"execution_state": "idle"}),
    ],
)
def test_decoding_gives_what_jupyter_client_gives(msg_type, content):
    # given: one message, read by our decoder and by jupyter_client's own
    sender, ours, theirs = _pair()
    parent = sender.msg("execute_request", {"code": "1"})
    frames = _frames(sender, msg_type, content, parent=parent)

    # when
    mine = decode(ours, frames)
    reference = theirs.deserialize(theirs.feed_identities(frames)[1], content=True)

    # then: the same message, except that header dates stay ISO strings
    for key in ("msg_id", "msg_type", "content", "metadata"):
        assert mine[key] == reference[key]
    assert mine["parent_header"]["msg_id"] == reference["parent_header"]["msg_id"] == parent["header"]["msg_id"]
    assert mine["header"]["date"] == reference["header"]["date"].isoformat().replace("+00:00", "Z")
    assert set(mine["header"]) == set(reference["header"])


def test_a_replayed_message_is_refused():
    sender, ours, _ = _pair()
    frames = _frames(sender, "stream", {"name": "stdout", "text": "once"})
    decode(ours, frames)

    with pytest.raises(ValueError, match="Duplicate Signature"):
        decode(ours, frames)


def test_a_forged_or_unsigned_message_is_refused():
    sender, ours, _ = _pair()
    frames = _frames(sender, "stream", {"name": "stdout", "text": "real"})
    forged = [*frames[:-1], b'{"name": "stdout", "text": "forged"}']
    unsigned = [frames[0], frames[1], b"", *frames[3:]]
    other_key = _frames(Session(key=b"another key"), "stream", {"name": "stdout", "text": "x"})

    for bad in (forged, unsigned, other_key):
        with pytest.raises(ValueError):
            decode(ours, bad)


def test_a_message_without_its_parts_is_refused():
    sender, ours, _ = _pair()
    frames = _frames(sender, "stream", {"name": "stdout", "text": "x"})

    with pytest.raises((TypeError, ValueError)):
        decode(ours, frames[:4])
