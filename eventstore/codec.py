"""Stored messages to the library's objects: the envelope decoder and its error."""

from __future__ import annotations

import msgspec
from eventsourcing.persistence import DataError, Notification

from eventstore.layout import Envelope, StreamLayout, originator_of

_envelope = msgspec.msgpack.Decoder(Envelope)
_new = object.__new__


class UndecodableEventError(DataError):
    """A stored message that is not an event this store can decode.

    The reader stops at `seq`; an operator inspects it (`cloudcc events show`) and either
    repairs the writer or records a skip (`cloudcc events skip`), after which readers pass it.
    """

    def __init__(self, stream: str, seq: int, subject: str, reason: str) -> None:
        super().__init__(f"{stream} message {seq} on {subject!r} does not decode: {reason}")
        self.stream = stream
        self.seq = seq
        self.subject = subject
        self.reason = reason


def decode_envelope(layout: StreamLayout, seq: int, subject: str, data: bytes) -> Envelope:
    try:
        return _envelope.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise UndecodableEventError(layout.stream, seq, subject, str(e)) from None


def notification_from_message(
    layout: StreamLayout, seq: int, subject: str, data: bytes
) -> Notification:
    """Decode one stored message into the library's Notification."""
    env = decode_envelope(layout, seq, subject, data)
    # The frozen dataclass's __init__ costs three times this, on the hottest read path;
    # the object is the same (fields, equality, hash, repr), as the tests check.
    notification: Notification = _new(Notification)
    notification.__dict__.update(
        id=seq,
        originator_id=originator_of(env),
        originator_version=env.originator_version,
        topic=env.topic,
        state=env.state,
    )
    return notification
