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
    IntegrityError,
    Notification,
    OperationalError,
    ProgrammingError,
    StoredEvent,
    Tracking,
)
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from eventstore.codec import UndecodableEventError, decode_envelope, notification_from_message
from eventstore.connection import NatsConnection
from eventstore.layout import (
    Envelope,
    StreamLayout,
    aggregate_token,
    envelope,
    originator_of,
    tenant_token,
)
from eventstore.reader import OrderedReader

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # JetStream's limit on messages in one atomic batch (ADR-50)
MAX_BATCHES_IN_FLIGHT = 40  # the server allows 50 per stream; leave room for others
READ_PAGE = 1000
CURSOR_MIN_LIMIT = 256  # a page this long is worth a consumer that reads ahead
CURSOR_IDLE = 30.0  # seconds a parked cursor waits for its next page
MAX_CURSORS = 8
# Read-ahead of a cursor: each refill after a pause recreates the consumer (~ms), so keep
# it well above a page; 8 cursors x 10k events of ~0.5 kB stay under 50 MB.
CURSOR_READ_AHEAD = 10 * READ_PAGE
PUBLISH_TIMEOUT = 10.0
CONFLICT = 10071  # wrong last sequence
RETRYABLE = {10163, 10164}  # clustered "expected last sequence temporarily unavailable"

_encoder = msgspec.msgpack.Encoder(uuid_format="bytes")


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


class Cursor:
    """A parked `OrderedReader` waiting for the next page of `select_notifications`."""

    def __init__(self, reader: OrderedReader, woken: asyncio.Event) -> None:
        self.reader = reader
        self.woken = woken
        self.expiry: asyncio.TimerHandle | None = None
        self.closed = False

    def close(self) -> None:
        self.closed = True
        if self.expiry is not None:
            self.expiry.cancel()
        self.reader.ended = True
        asyncio.get_running_loop().create_task(self.reader.close())


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
        self._cursors: dict[tuple[int, frozenset[str]], Cursor] = {}

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
        return await self._direct_get({"last_by_subj": subject_filter})

    async def get_seq(self, seq: int) -> Stored | None:
        return await self._direct_get({"seq": seq})

    async def _direct_get(self, request: dict[str, object]) -> Stored | None:
        try:
            msg = await self.conn.requests.request(
                self._direct, json.dumps(request).encode(), headers=None, timeout=PUBLISH_TIMEOUT
            )
        except nats.errors.NoRespondersError:
            raise OperationalError(f"stream {self.layout.stream} does not exist") from None
        except nats.errors.TimeoutError:
            raise OperationalError(f"no answer from stream {self.layout.stream}") from None
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
        self, start: int, batch: int, subject_filter: str | None
    ) -> tuple[list[Stored], int]:
        """Up to `batch` messages from `start` (matching the filter), and how many remain."""
        request: dict[str, object] = {"seq": start, "batch": batch}
        if subject_filter is not None:
            request["next_by_subj"] = subject_filter
        try:
            msgs, end = await self.conn.requests.request_many(
                self._direct, json.dumps(request).encode(), timeout=PUBLISH_TIMEOUT
            )
        except nats.errors.TimeoutError:
            raise OperationalError(f"no answer from stream {self.layout.stream}") from None
        out = [
            Stored(int(hdr["Nats-Sequence"]), hdr["Nats-Subject"], msg.data)
            for msg in msgs
            if (hdr := msg.headers) is not None
        ]
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
        start = 1
        known = self._tails.get(token)
        if gt is not None and known is not None and known.version == gt:
            # A cached aggregate catching up (eventsourcing's fast-forward): what came
            # after the version it has lies after that version's message; scanning from
            # there reads nothing but what is new, not the aggregate's whole history.
            start = known.seq + 1
        stored = await self._scan(self.layout.aggregate_filter(token), start)
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
        first = max(1 if start is None else (start if inclusive_of_start else start + 1), 1)
        wanted = frozenset(topics)
        cursor = self._cursors.pop((first, wanted), None)
        if cursor is not None and cursor.expiry is not None:
            cursor.expiry.cancel()
        elif cursor is None and limit >= CURSOR_MIN_LIMIT:
            cursor = await self._open_cursor(first, wanted)
        if cursor is None:
            return await self._select_direct(first, limit, stop, wanted)
        return await self._select_from(cursor, first, limit, stop)

    async def _select_direct(
        self, first: int, limit: int, stop: int | None, wanted: frozenset[str]
    ) -> list[Notification]:
        """A short read: direct gets, no consumer to set up."""
        result: list[Notification] = []
        events_prefix = self.layout.event_prefix
        while len(result) < limit:
            # Unfiltered, skipping tracking and operator records here: a subject filter
            # makes the server several times slower at this (nats-server 2.15).
            batch = READ_PAGE if wanted else min(READ_PAGE, limit - len(result) + 16)
            page, pending = await self._get_batch(first, batch, None)
            for stored in page:
                if stop is not None and stored.seq > stop:
                    return result
                if not stored.subject.startswith(events_prefix):
                    continue
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

    async def _open_cursor(self, first: int, wanted: frozenset[str]) -> Cursor | None:
        if await self._last_seq() < first:
            return None
        woken = asyncio.Event()
        reader = OrderedReader(
            self, first - 1, topics=wanted, high_water=CURSOR_READ_AHEAD, on_new=woken.set
        )
        await reader.start()
        return Cursor(reader, woken)

    async def _last_seq(self) -> int:
        try:
            info = await self.conn.js.stream_info(self.layout.stream)
        except NotFoundError:
            raise OperationalError(f"stream {self.layout.stream} does not exist") from None
        return int(info.state.last_seq)

    async def _select_from(
        self, cursor: Cursor, first: int, limit: int, stop: int | None
    ) -> list[Notification]:
        """A page from a cursor that reads ahead: sequential pages cost one stream read."""
        reader, items = cursor.reader, cursor.reader.items
        result: list[Notification] = []
        checked_end = False
        try:
            while len(result) < limit:
                if not items:
                    if reader.ended:
                        break
                    if reader.caught_up:
                        # Read-your-writes: what was stored before this call is returned,
                        # even if its delivery to the cursor is still on the way.
                        if checked_end:
                            break
                        checked_end = True
                        stored_up_to = await self._last_seq()
                        if items:
                            continue  # delivered while we asked
                        if stored_up_to <= reader.last_seq:
                            break
                    reader.resume()
                    cursor.woken.clear()
                    if not items:
                        await self._await_delivery(cursor)
                    continue
                item = items[0]
                if isinstance(item, UndecodableEventError):
                    if not result:
                        cursor.close()
                        raise item
                    break  # hand over what precedes it; the next read raises
                if stop is not None and item.id > stop:
                    break
                items.popleft()
                result.append(item)
                if reader.paused and len(items) <= READ_PAGE:
                    reader.resume()
        finally:
            if not cursor.closed:
                self._park(cursor, result[-1].id + 1 if result else first)
        return result

    async def _await_delivery(self, cursor: Cursor) -> None:
        """Wait for the cursor's reader to take something in, as long as it progresses.

        A page filtered by topic may read through millions of other events before the
        next match: that is progress, not a stall. A reader that takes nothing in for a
        whole timeout gets its consumer recreated once (e.g. the server restarted and
        forgot it) before the read gives up.
        """
        reader = cursor.reader
        restarted = False
        while True:
            seen = reader.last_seq
            try:
                await asyncio.wait_for(cursor.woken.wait(), PUBLISH_TIMEOUT)
                return
            except TimeoutError:
                if reader.last_seq != seen:
                    continue
                if not restarted:
                    restarted = True
                    reader.restart("a page waited in vain")
                    continue
            cursor.close()
            raise OperationalError(f"reading {self.layout.stream} stalled at {reader.last_seq}")

    def _park(self, cursor: Cursor, next_first: int) -> None:
        key = (next_first, cursor.reader.wanted)
        if len(self._cursors) >= MAX_CURSORS or key in self._cursors:
            oldest = self._cursors.pop(key, None) or self._cursors.pop(next(iter(self._cursors)))
            oldest.close()
        loop = asyncio.get_running_loop()

        def expire() -> None:
            if self._cursors.get(key) is cursor:
                del self._cursors[key]
                cursor.close()

        cursor.expiry = loop.call_later(CURSOR_IDLE, expire)
        self._cursors[key] = cursor

    async def max_notification_id(self) -> int | None:
        last_seq = await self._last_seq()
        if not last_seq:
            return None
        last = await self.get_seq(last_seq)
        if last is not None and last.subject.startswith(self.layout.event_prefix):
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
                    last = expected[tokens[i]]
                    headers = {"Nats-Expected-Last-Subject-Sequence": str(last)}
                    if last == 0:
                        # Creating: no message of this aggregate under any tenant, so an
                        # id lives under one tenant only. Later appends check their own
                        # subject, which is then the aggregate's only one (and the
                        # header, stored with every event, stays short).
                        headers["Nats-Expected-Last-Subject-Sequence-Subject"] = (
                            self.layout.aggregate_filter(tokens[i])
                        )
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
                ack = await self._reconcile(messages)
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
        if not unknown:
            return expected
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
        if not self.conn.nc.is_connected:
            # nats-py would buffer it and send it after a reconnect, long after we gave
            # up on it: refuse now, with nothing in flight.
            raise OperationalError(f"not connected to NATS; {subject} not appended")
        try:
            reply = await self.conn.requests.request(
                subject, payload, headers=headers, timeout=PUBLISH_TIMEOUT
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
        if not nc.is_connected:
            raise OperationalError(f"not connected to NATS; {self.layout.stream} not appended")
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

    async def _reconcile(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> PubAck:
        """A publish timed out, which does not mean it failed: look, then decide.

        The save's first message names a subject and the sequence it expected there; if
        the save was stored, that message is on that subject after that sequence (others
        may have appended since), and the rest of an atomic batch follows it.
        """
        subject, payload, headers = messages[0]
        after = int(headers["Nats-Expected-Last-Subject-Sequence"])
        try:
            # Whatever we sent has reached the server once it answers this.
            await self.conn.nc.flush(int(PUBLISH_TIMEOUT))
            later, _ = await self._get_batch(after + 1, READ_PAGE, subject)
        except Exception as error:  # noqa: BLE001 - any failure here leaves it unknown
            log.warning("reconciling a timed-out append to %s: %s", subject, error)
            later = []
        for stored in later:
            if stored.data == payload:
                return PubAck(stream=self.layout.stream, seq=stored.seq + len(messages) - 1)
        raise OperationalError(
            f"append to {subject} timed out and was not found stored; it may still land: "
            "re-read before retrying"
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
