"""The live chat's WebSocket frames: JSON objects tagged by `"type"`.

Visitor → server:

| type | fields | answer |
|---|---|---|
| `hello` | `token` (from an earlier welcome, or none), `name` | `welcome` |
| `say` | `id` (the widget's own id of the message), `text` | `accepted` with the id |
| `leave` | `id`, `name`, `email` and/or `phone`, `text` (offline form) | `accepted` |

Server → visitor:

| type | fields |
|---|---|
| `welcome` | `token` (keep it), `online`, `messages` so far (`line` objects) |
| `line` | one message: `id`, `by` (`visitor`, `agent` or `bot`), `text`, `at`, `agent` (name) |
| `accepted` | `id`: the message is safely on the event bus |
| `online` | whether an agent is available now |
| `error` | `code`, `message`, and the `id` of the message it is about, if any |

A frame that does not decode, or comes out of order, is answered with an `error` frame;
the socket stays open. A visitor's message id is made by the widget, so a message sent
again after a lost connection is recorded once.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

MAX_TEXT = 2000  # characters of one chat message
MAX_NAME = 100
MAX_FRAME = 16 * 1024  # bytes of one frame from a visitor

ClientId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Token = Annotated[str, msgspec.Meta(max_length=200)]


class _Frame(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class Hello(_Frame, frozen=True, kw_only=True, tag="hello"):
    token: Token | None = None
    name: Name = ""


class Say(_Frame, frozen=True, kw_only=True, tag="say"):
    id: ClientId
    text: Text
    # The name the visitor gives before their first message (optional): the customer's.
    name: Name = ""


class Leave(_Frame, frozen=True, kw_only=True, tag="leave"):
    """The offline form: a message left while no agent is available."""

    id: ClientId
    name: Name
    email: Annotated[str, msgspec.Meta(max_length=254)] = ""
    phone: Annotated[str, msgspec.Meta(max_length=30)] = ""
    text: Text


VisitorFrame = Hello | Say | Leave


class Line(_Frame, frozen=True, kw_only=True, tag="line"):
    id: str
    by: Literal["visitor", "agent", "bot"]
    text: str
    at: str
    agent: str = ""


class Welcome(_Frame, frozen=True, kw_only=True, tag="welcome"):
    token: str
    online: bool
    messages: list[Line]


class Accepted(_Frame, frozen=True, kw_only=True, tag="accepted"):
    id: str


class Online(_Frame, frozen=True, kw_only=True, tag="online"):
    online: bool


class Error(_Frame, frozen=True, kw_only=True, tag="error"):
    code: str
    message: str
    id: str | None = None


ServerFrame = Welcome | Line | Accepted | Online | Error

_decoder = msgspec.json.Decoder(VisitorFrame)
_encoder = msgspec.json.Encoder()


def decode(data: str | bytes) -> VisitorFrame:
    """A visitor's frame; raises msgspec.ValidationError / DecodeError with the reason."""
    return _decoder.decode(data)


def encode(frame: ServerFrame) -> str:
    return _encoder.encode(frame).decode()
