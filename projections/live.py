"""Live updates: what a read model changed, published on NATS for the web layer to push.

Subject `live.<tenant>.<readmodel>.<kind>` (`<tenant>` is eventstore.layout's tenant
token), payload JSON of `LiveChange`. Core NATS, not JetStream: a browser that missed a
change refetches the view when it reconnects, so nothing needs to be kept; what matters
is that a change is published only after its transaction committed, so a reader that
refetches on the message sees it.

The web layer subscribes to `live.<tenant>.>` for the signed-in user's tenant only, which
is how the tenant wall holds for pushes too.
"""

from __future__ import annotations

from typing import Final

import msgspec

from eventstore.layout import tenant_token
from projections.readmodel import Change

PREFIX: Final = "live"


class LiveChange(msgspec.Struct, frozen=True):
    readmodel: str
    kind: str
    key: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LiveChange)


def subject(change: Change) -> str:
    return f"{PREFIX}.{tenant_token(change.tenant_id)}.{change.readmodel}.{change.kind}"


def tenant_filter(tenant_id: str) -> str:
    return f"{PREFIX}.{tenant_token(tenant_id)}.>"


def encode(change: Change) -> bytes:
    return _encoder.encode(LiveChange(change.readmodel, change.kind, change.key))


def decode(payload: bytes) -> LiveChange:
    return _decoder.decode(payload)
