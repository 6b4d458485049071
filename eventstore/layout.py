"""Stream and subject layout of the event store: the contract integrators subscribe to.

One JetStream stream per eventsourcing application, so that the stream sequence is that
application's notification id (totally ordered, never reused):

| stream | subjects | holds |
|---|---|---|
| `ES_<APP>` | `es.<tenant>.<app>.<aggregate>` | domain events, one subject per aggregate |
| | `trk.<app>.<upstream>` | tracking records of a process application |
| | `ops.<app>.skip` | operator decisions to skip an undecodable message |
| `SS_<APP>` | `ss.<tenant>.<app>.<aggregate>` | snapshots (when the application takes them) |

- `<tenant>` is the tenant id, or `_` for system-wide aggregates (the operator's own).
- `<app>` is the application name in lower case (`BankAccounts` → `bankaccounts`).
- `<aggregate>` is the aggregate id: a UUID in its canonical 36-character form, a string id
  made only of `[A-Za-z0-9_-]` as it is, any other string id as `~` + URL-safe base64.
- Payload: a msgpack array `[1, uuid-or-nil, str-id-or-nil, originator_version, topic,
  state]` (see `Envelope`; a UUID is 16 raw bytes); `state` is the transcoded event (eventstore.transcoder by default).

So `es.acme.>` is everything of tenant `acme`, `es.*.calls.*` every event of the `calls`
application, and `es.acme.calls.<id>` one call's history in order.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from functools import cached_property
from uuid import UUID

import msgspec
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

SYSTEM_TENANT = "_"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class InvalidTenantError(ValueError):
    """A tenant id that cannot be a subject token."""


class Envelope(msgspec.Struct, array_like=True, tag=1, frozen=True):
    """Version 1 of a stored event's payload. The tag is the format version."""

    # A UUID id is stored as 16 raw bytes in the first field, a string id in the second.
    originator_uuid: UUID | None
    originator_str: str | None
    originator_version: int
    topic: str
    state: bytes


def tenant_token(tenant_id: str | None) -> str:
    if tenant_id is None or tenant_id == "":
        return SYSTEM_TENANT
    if not _TOKEN.match(tenant_id):
        raise InvalidTenantError(f"tenant id {tenant_id!r} must match [A-Za-z0-9_-]{{1,128}}")
    return tenant_id


def app_token(app_name: str) -> str:
    token = re.sub(r"[^a-z0-9_-]", "_", app_name.lower())
    return token or "app"


def aggregate_token(originator_id: UUID | str) -> str:
    if isinstance(originator_id, UUID):
        return str(originator_id)
    if _TOKEN.match(originator_id) and not originator_id.startswith("~"):
        return originator_id
    return "~" + base64.urlsafe_b64encode(originator_id.encode()).decode().rstrip("=")


@dataclass(frozen=True)
class StreamLayout:
    """Names and subjects of one application's event (or snapshot) stream."""

    app_name: str
    kind: str = "es"  # "es" for events, "ss" for snapshots

    @cached_property
    def app(self) -> str:
        return app_token(self.app_name)

    @cached_property
    def stream(self) -> str:
        return f"{self.kind.upper()}_{self.app.upper().replace('-', '_')}"

    @cached_property
    def event_prefix(self) -> str:
        """What every event subject starts with (tracking and ops records do not)."""
        return f"{self.kind}."

    def event_subject(self, tenant: str, aggregate: str) -> str:
        return f"{self.kind}.{tenant}.{self.app}.{aggregate}"

    def aggregate_filter(self, aggregate: str) -> str:
        """Every subject of one aggregate, whatever its tenant."""
        return f"{self.kind}.*.{self.app}.{aggregate}"

    @property
    def events_filter(self) -> str:
        return f"{self.kind}.*.{self.app}.*"

    def tracking_subject(self, upstream: str) -> str:
        return f"trk.{self.app}.{app_token(upstream)}"

    @property
    def skip_subject(self) -> str:
        return f"ops.{self.app}.skip"

    def tenant_of(self, subject: str) -> str:
        return subject.split(".", 2)[1]

    def stream_config(self, replicas: int = 1) -> StreamConfig:
        subjects = [self.events_filter]
        if self.kind == "es":
            subjects += [f"trk.{self.app}.*", f"ops.{self.app}.*"]
        return StreamConfig(
            name=self.stream,
            subjects=subjects,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            # An event store never ages out or drops events: no limits, no discard.
            max_msgs=-1,
            max_bytes=-1,
            max_age=0,
            max_msgs_per_subject=-1,
            discard=DiscardPolicy.NEW,
            num_replicas=replicas,
            allow_direct=True,
            allow_atomic=True,
            deny_delete=True,
        )


def envelope(originator_id: UUID | str, version: int, topic: str, state: bytes) -> Envelope:
    if isinstance(originator_id, UUID):
        return Envelope(originator_id, None, version, topic, state)
    return Envelope(None, originator_id, version, topic, state)


def originator_of(env: Envelope) -> UUID | str:
    return env.originator_uuid if env.originator_uuid is not None else env.originator_str or ""
