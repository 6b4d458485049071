"""The event store's async core: appends with optimistic concurrency, reads, tracking.

Everything here runs on the loop of an `eventstore.connection.NatsConnection`; the
synchronous recorders in `eventstore.recorders` call it through `NatsConnection.run`.
See the package docstring for the concurrency and atomicity mechanism.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import msgspec
import nats.errors
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    Notification,
    OperationalError,
    ProgrammingError,
    StoredEvent,
    Tracking,
)
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from eventstore.connection import NatsConnection
from eventstore.layout import (
    Envelope,
    StreamLayout,
    aggregate_token,
    envelope,
    originator_of,
    tenant_token,
)

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # JetStream's limit on messages in one atomic batch (ADR-50)
MAX_BATCHES_IN_FLIGHT = 40  # the server allows 50 per stream; leave room for others
READ_PAGE = 1000
PUBLISH_TIMEOUT = 10.0
CONFLICT = 10071  # wrong last sequence
RETRYABLE = {10163, 10164}  # clustered "expected last sequence temporarily unavailable"

_encoder = msgspec.msgpack.Encoder(uuid_format="bytes")
_envelope = msgspec.msgpack.Decoder(Envelope)


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


class TenantMismatchError(IntegrityError):
    """An aggregate's events were saved under another tenant before."""


class PubAckError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    error: PubAckError | None = None
    batch: str | None = None
    count: int | None = None


class SkipRecord(msgspec.Struct, frozen=True):
    """An operator's decision to let readers pass one undecodable message."""

    seq: int
    reason: str
    by: str = ""


_puback = msgspec.json.Decoder(PubAck)


@dataclass(frozen=True)
class Tail:
    """The last stored event of one aggregate."""

    version: int
    seq: int
    tenant: str


@dataclass(frozen=True)
class Stored:
    """A stored message as read back: sequence, subject, raw payload."""

    seq: int
    subject: str
    data: bytes


class JetStreamStore:
    """One application's stream: append, read by aggregate, read in order, track."""

    def __init__(
        self,
        conn: NatsConnection,
        layout: StreamLayout,
        *,
        replicas: int = 1,
        cache_size: int = 100_000,
    ) -> None:
        self.conn = conn
        self.layout = layout
        self.replicas = replicas
        self._direct = f"$JS.API.DIRECT.GET.{layout.stream}"
        self._tails: dict[str, Tail] = {}
        self._tracking: dict[str, tuple[int, int]] = {}
        self._cache_size = cache_size
        self._skips: dict[int, SkipRecord] | None = None
        self._batch_slots: asyncio.Semaphore | None = None

    # ----------------------------------------------------------------- stream
    async def ensure_stream(self) -> None:
        config = self.layout.stream_config(self.replicas)
        try:
            info = await self.conn.js.stream_info(self.layout.stream)
        except NotFoundError:
            await self.conn.js.add_stream(config)
            return
        if info.config.allow_atomic is not True or info.config.allow_direct is not True:
            # Someone (faststream's declare=True, an operator) changed the stream: the
            # store's guarantees depend on these two flags, so put them back.
            await self.conn.js.update_stream(config)

    # ----------------------------------------------------------------- decode
    def _decode(self, stored: Stored) -> Envelope:
        return decode_envelope(self.layout, stored.seq, stored.subject, stored.data)

    def _notification(self, stored: Stored) -> Notification:
        return notification_from_message(self.layout, stored.seq, stored.subject, stored.data)

    # ------------------------------------------------------------ direct gets
    async def _get_last(self, subject_filter: str) -> Stored | None:
        try:
            msg = await self.conn.nc.request(
                self._direct,
                json.dumps({"last_by_subj": subject_filter}).encode(),
                timeout=PUBLISH_TIMEOUT,
            )
        except nats.errors.NoRespondersError:
            raise OperationalError(f"stream {self.layout.stream} does not exist") from None
        return self._stored(msg)

    async def get_seq(self, seq: int) -> Stored | None:
        msg = await self.conn.nc.request(
            self._direct, json.dumps({"seq": seq}).encode(), timeout=PUBLISH_TIMEOUT
        )
        return self._stored(msg)

    def _stored(self, msg: Msg) -> Stored | None:
        hdr = msg.headers or {}
        status = hdr.get("Status")
        if status == "404":
            return None
        if status:
            raise OperationalError(f"direct get on {self.layout.stream}: {status} {hdr}")
        return Stored(int(hdr["Nats-Sequence"]), hdr["Nats-Subject"], msg.data)

    async def _get_batch(
        self, start: int, batch: int, subject_filter: str
    ) -> tuple[list[Stored], int]:
        """Up to `batch` messages from `start` matching the filter, and how many remain."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[str, str]] = loop.create_future()
        out: list[Stored] = []

        async def collect(msg: Msg) -> None:
            hdr = msg.headers
            if hdr is None:
                return
            if "Status" in hdr:
                if not done.done():
                    done.set_result(hdr)
                return
            out.append(Stored(int(hdr["Nats-Sequence"]), hdr["Nats-Subject"], msg.data))

        nc = self.conn.nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=collect, pending_msgs_limit=batch + 16)
        try:
            await nc.publish(
                self._direct,
                json.dumps({"seq": start, "batch": batch, "next_by_subj": subject_filter}).encode(),
                reply=inbox,
            )
            try:
                end = await asyncio.wait_for(done, PUBLISH_TIMEOUT)
            except TimeoutError:
                raise OperationalError(f"no answer from stream {self.layout.stream}") from None
        finally:
            await sub.unsubscribe()
        status = end.get("Status")
        if status == "404":
            return out, 0
        if status != "204":
            raise OperationalError(f"direct get on {self.layout.stream}: {status} {end}")
        return out, int(end.get("Nats-Num-Pending", "0"))

    async def _scan(self, subject_filter: str, start: int = 1) -> list[Stored]:
        stored: list[Stored] = []
        while True:
            page, pending = await self._get_batch(start, READ_PAGE, subject_filter)
            stored.extend(page)
            if not page or pending == 0:
                return stored
            start = page[-1].seq + 1

    # ------------------------------------------------------------------ reads
    async def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        token = aggregate_token(originator_id)
        if desc and lte is None and limit == 1:
            # The latest event or snapshot: one direct get, no scan.
            last = await self._get_last(self.layout.aggregate_filter(token))
            if last is None:
                return []
            env = self._decode(last)
            self._remember(
                token, Tail(env.originator_version, last.seq, self.layout.tenant_of(last.subject))
            )
            if gt is not None and env.originator_version <= gt:
                return []
            return [self._stored_event(env)]
        stored = await self._scan(self.layout.aggregate_filter(token))
        events = [self._decode(s) for s in stored]
        if stored:
            self._remember(
                token,
                Tail(
                    events[-1].originator_version,
                    stored[-1].seq,
                    self.layout.tenant_of(stored[-1].subject),
                ),
            )
        selected = [
            self._stored_event(e)
            for e in events
            if (gt is None or e.originator_version > gt)
            and (lte is None or e.originator_version <= lte)
        ]
        if desc:
            selected.reverse()
        return selected[:limit] if limit is not None else selected

    @staticmethod
    def _stored_event(env: Envelope) -> StoredEvent:
        return StoredEvent(
            originator_id=originator_of(env),
            originator_version=env.originator_version,
            topic=env.topic,
            state=env.state,
        )

    async def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        first = 1 if start is None else (start if inclusive_of_start else start + 1)
        first = max(first, 1)
        wanted = set(topics)
        result: list[Notification] = []
        while len(result) < limit:
            page, pending = await self._get_batch(
                first,
                min(READ_PAGE, max(limit - len(result), 64 if wanted else 1)),
                self.layout.events_filter,
            )
            for stored in page:
                if stop is not None and stored.seq > stop:
                    return result
                try:
                    notification = self._notification(stored)
                except UndecodableEventError:
                    if await self.is_skipped(stored.seq):
                        continue
                    if result:
                        return result  # hand over what precedes it; the next read raises
                    raise
                if wanted and notification.topic not in wanted:
                    continue
                result.append(notification)
                if len(result) == limit:
                    return result
            if not page or pending == 0:
                break
            first = page[-1].seq + 1
        return result

    async def max_notification_id(self) -> int | None:
        try:
            info = await self.conn.js.stream_info(self.layout.stream)
        except NotFoundError:
            raise OperationalError(f"stream {self.layout.stream} does not exist") from None
        last_seq = info.state.last_seq
        if not last_seq:
            return None
        last = await self.get_seq(last_seq)
        if last is not None and last.subject.startswith(f"{self.layout.kind}."):
            return last_seq
        # The stream ends with tracking or operator records: find the last event.
        last = await self._get_last(self.layout.events_filter)
        return None if last is None else last.seq

    # ----------------------------------------------------------- skip records
    async def is_skipped(self, seq: int) -> bool:
        if self._skips is None or seq not in self._skips:
            self._skips = await self.skips()
        return seq in self._skips

    async def skips(self) -> dict[int, SkipRecord]:
        found: dict[int, SkipRecord] = {}
        for stored in await self._scan(self.layout.skip_subject):
            try:
                record = msgspec.json.decode(stored.data, type=SkipRecord)
            except msgspec.MsgspecError:
                log.warning("ignoring malformed skip record at %s", stored.seq)
                continue
            found[record.seq] = record
        return found

    async def skip(self, seq: int, reason: str, by: str = "") -> None:
        await self._publish_one(
            self.layout.skip_subject, msgspec.json.encode(SkipRecord(seq, reason, by)), {}
        )
        self._skips = None

    # --------------------------------------------------------------- tracking
    async def max_tracking_id(self, application_name: str) -> int | None:
        last = await self._last_tracking(application_name)
        return None if last is None else last[0]

    async def _last_tracking(self, application_name: str) -> tuple[int, int] | None:
        stored = await self._get_last(self.layout.tracking_subject(application_name))
        if stored is None:
            return None
        try:
            notification_id = msgspec.msgpack.decode(stored.data, type=int)
        except msgspec.MsgspecError as e:
            raise UndecodableEventError(
                self.layout.stream, stored.seq, stored.subject, str(e)
            ) from None
        return notification_id, stored.seq

    # ---------------------------------------------------------------- appends
    def _remember(self, token: str, tail: Tail) -> None:
        tails = self._tails
        tails.pop(token, None)
        tails[token] = tail
        if len(tails) > self._cache_size:
            del tails[next(iter(tails))]

    async def _tail(self, token: str) -> Tail | None:
        last = await self._get_last(self.layout.aggregate_filter(token))
        if last is None:
            return None
        env = self._decode(last)
        tail = Tail(env.originator_version, last.seq, self.layout.tenant_of(last.subject))
        self._remember(token, tail)
        return tail

    async def insert(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        tenant_id: str | None = None,
        tracking: Tracking | None = None,
    ) -> list[int]:
        """Append atomically; returns the events' stream sequences (notification ids)."""
        if not stored_events and tracking is None:
            return []
        tenant = tenant_token(tenant_id)
        groups: dict[str, list[int]] = {}
        tokens: list[str] = []
        for i, event in enumerate(stored_events):
            token = aggregate_token(event.originator_id)
            tokens.append(token)
            indexes = groups.setdefault(token, [])
            if (
                indexes
                and event.originator_version <= stored_events[indexes[-1]].originator_version
            ):
                raise IntegrityError(
                    f"versions of {event.originator_id} must increase within one save"
                )
            indexes.append(i)
        count = len(stored_events) + (tracking is not None)
        if count > MAX_BATCH:
            raise ProgrammingError(
                f"one save holds {count} messages; JetStream commits at most {MAX_BATCH} atomically"
            )
        payloads = [
            _encoder.encode(envelope(e.originator_id, e.originator_version, e.topic, e.state))
            for e in stored_events
        ]
        subjects = [self.layout.event_subject(tenant, t) for t in tokens]
        tracking_subject = (
            self.layout.tracking_subject(tracking.application_name) if tracking else ""
        )

        for attempt in range(8):
            expected = await self._expected(stored_events, groups, tenant, optimistic=attempt == 0)
            expected_tracking = await self._expected_tracking(tracking, optimistic=attempt == 0)
            messages: list[tuple[str, bytes, dict[str, str]]] = []
            # Only an aggregate's first message carries the check: later ones in the
            # same batch may not (10164), and atomicity covers them anyway.
            first_of = {indexes[0] for indexes in groups.values()}
            for i, (subject, payload) in enumerate(zip(subjects, payloads, strict=True)):
                headers: dict[str, str] = {}
                if i in first_of:
                    headers = {
                        "Nats-Expected-Last-Subject-Sequence": str(expected[tokens[i]]),
                        # Any tenant: an aggregate id is one sequence, whoever saved it.
                        "Nats-Expected-Last-Subject-Sequence-Subject": self.layout.aggregate_filter(
                            tokens[i]
                        ),
                    }
                messages.append((subject, payload, headers))
            if tracking is not None:
                messages.append(
                    (
                        tracking_subject,
                        _encoder.encode(tracking.notification_id),
                        {"Nats-Expected-Last-Subject-Sequence": str(expected_tracking)},
                    )
                )
            try:
                ack = await self._publish(messages)
            except TimeoutError:
                ack = await self._reconcile(stored_events, groups, payloads, len(messages))
            if ack.error is None:
                first_seq = ack.seq - len(messages) + 1
                for token, indexes in groups.items():
                    last = indexes[-1]
                    self._remember(
                        token,
                        Tail(stored_events[last].originator_version, first_seq + last, tenant),
                    )
                if tracking is not None:
                    self._tracking[tracking.application_name] = (tracking.notification_id, ack.seq)
                return list(range(first_seq, first_seq + len(stored_events)))
            if ack.error.err_code == CONFLICT:
                # Someone appended since we looked: forget what we knew and look again.
                for token in groups:
                    self._tails.pop(token, None)
                if tracking is not None:
                    self._tracking.pop(tracking.application_name, None)
                continue
            if ack.error.err_code in RETRYABLE:
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            raise OperationalError(
                f"append to {self.layout.stream} refused: {ack.error.err_code} {ack.error.description}"
            )
        raise IntegrityError(f"append to {self.layout.stream} kept conflicting with other writers")

    async def _expected(
        self,
        stored_events: Sequence[StoredEvent],
        groups: dict[str, list[int]],
        tenant: str,
        *,
        optimistic: bool,
    ) -> dict[str, int]:
        expected: dict[str, int] = {}
        unknown: list[str] = []
        for token, indexes in groups.items():
            first_version = stored_events[indexes[0]].originator_version
            tail = self._tails.get(token)
            if tail is not None and tail.version >= first_version:
                raise IntegrityError(
                    f"{stored_events[indexes[0]].originator_id} already has version {first_version}"
                )
            if tail is not None and tail.version == first_version - 1 and tail.tenant == tenant:
                expected[token] = tail.seq
            elif tail is None and optimistic and first_version <= 1:
                # A first version: most likely a new aggregate, so skip the lookup and
                # let the server's check tell us otherwise.
                expected[token] = 0
            else:
                unknown.append(token)
        tails = await asyncio.gather(*(self._tail(t) for t in unknown))
        for token, tail in zip(unknown, tails, strict=True):
            event = stored_events[groups[token][0]]
            if tail is None:
                expected[token] = 0
                continue
            if tail.version >= event.originator_version:
                raise IntegrityError(
                    f"{event.originator_id} already has version {event.originator_version}"
                )
            if tail.tenant != tenant:
                raise TenantMismatchError(
                    f"{event.originator_id} belongs to tenant {tail.tenant!r}, not {tenant!r}"
                )
            expected[token] = tail.seq
        return expected

    async def _expected_tracking(self, tracking: Tracking | None, *, optimistic: bool) -> int:
        if tracking is None:
            return 0
        known = None if not optimistic else self._tracking.get(tracking.application_name)
        if known is None:
            known = await self._last_tracking(tracking.application_name)
        if known is None:
            return 0
        if tracking.notification_id <= known[0]:
            raise IntegrityError(
                f"{tracking.application_name} already tracked to {known[0]}, "
                f"not after {tracking.notification_id}"
            )
        self._tracking[tracking.application_name] = known
        return known[1]

    async def _publish_one(self, subject: str, payload: bytes, headers: dict[str, str]) -> PubAck:
        try:
            reply = await self.conn.nc.request(
                subject, payload, timeout=PUBLISH_TIMEOUT, headers=headers
            )
        except nats.errors.NoRespondersError:
            raise OperationalError(f"stream {self.layout.stream} does not exist") from None
        except nats.errors.TimeoutError:
            raise TimeoutError(subject) from None
        return _puback.decode(reply.data)

    async def _publish(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> PubAck:
        if len(messages) == 1:
            return await self._publish_one(*messages[0])
        if self._batch_slots is None:
            self._batch_slots = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        batch_id = uuid.uuid4().hex
        nc = self.conn.nc
        async with self._batch_slots:
            for n, (subject, payload, headers) in enumerate(messages[:-1], start=1):
                await nc.publish(
                    subject,
                    payload,
                    headers={**headers, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(n)},
                )
            subject, payload, headers = messages[-1]
            return await self._publish_one(
                subject,
                payload,
                {
                    **headers,
                    "Nats-Batch-Id": batch_id,
                    "Nats-Batch-Sequence": str(len(messages)),
                    "Nats-Batch-Commit": "1",
                },
            )

    async def _reconcile(
        self,
        stored_events: Sequence[StoredEvent],
        groups: dict[str, list[int]],
        payloads: list[bytes],
        count: int,
    ) -> PubAck:
        """A publish timed out, which does not mean it failed: look, then decide."""
        token, indexes = next(iter(groups.items()))
        last = await self._get_last(self.layout.aggregate_filter(token))
        mine = indexes[-1]
        if last is not None and last.data == payloads[mine]:
            # Committed: sequences of an atomic batch are contiguous.
            return PubAck(stream=self.layout.stream, seq=last.seq - mine + count - 1)
        raise OperationalError(
            f"append to {self.layout.stream} timed out and is not stored; it may be retried"
        )


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
    return Notification(
        id=seq,
        originator_id=originator_of(env),
        originator_version=env.originator_version,
        topic=env.topic,
        state=env.state,
    )


__all__ = [
    "JetStreamStore",
    "PubAck",
    "SkipRecord",
    "Stored",
    "TenantMismatchError",
    "UndecodableEventError",
    "notification_from_message",
]
