"""A projection fed from the event store by a faststream subscriber.

The subscriber is an ordered push consumer on the application's event subjects, starting
just after the read model's tracked position. Each message is decoded with the
application's own mapper and applied with its position in one SQLite transaction, so a
redelivered or replayed event changes nothing. There are no acks to lose: if applying
fails, the service records the error, drops the consumer and starts a new one from the
tracked position after a pause, so nothing is skipped and nothing is applied twice.

faststream is given `declare=False`: the event-store stream is managed by `eventstore`
(faststream's declare would rewrite its config and could switch atomic publish off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from eventsourcing.application import Application
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventstore.codec import UndecodableEventError, notification_from_message
from eventstore.layout import StreamLayout

log = logging.getLogger(__name__)


class ReadModel(Protocol):
    name: str

    def position(self) -> int: ...

    def apply(self, position: int, event: Any) -> bool: ...

    def advance(self, position: int) -> None: ...


class ProjectionService:
    """Keeps one read model up to date with one application's events."""

    def __init__(
        self,
        app: Callable[[], Application[Any]],
        app_name: str,
        readmodel: ReadModel,
        *,
        retry_after: float = 2.0,
    ) -> None:
        # The application is built once NATS is up, by the service started before this one.
        self._app = app
        self.readmodel = readmodel
        self.name = readmodel.name
        self.layout = StreamLayout(app_name)
        self.retry_after = retry_after
        self.state = "stopped"
        self.error: str | None = None
        self.stream_last = 0
        self._url = ""
        self._broker: NatsBroker | None = None
        self._failed = False
        self._failures = 0
        self._retry: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def app(self) -> Application[Any]:
        return self._app()

    async def start(self, runtime: Any) -> None:
        self._url = runtime.nats_url
        await self._subscribe()
        self._watch = asyncio.get_running_loop().create_task(self._watch_stream(runtime))

    async def _watch_stream(self, runtime: Any) -> None:
        # While events flow, each delivery says how many follow. A parked projection
        # receives nothing, so its lag comes from the stream's end (which may also count
        # a few tracking or operator records: an upper bound is what an operator needs).
        js = runtime.nc.jetstream()
        while True:
            await asyncio.sleep(1.0)
            if self.state != "error":
                continue
            try:
                info = await js.stream_info(self.layout.stream)
                self.stream_last = max(self.stream_last, info.state.last_seq)
            except Exception as error:  # noqa: BLE001 - health reporting must not die
                log.debug("stream info for %s: %s", self.layout.stream, error)

    async def _subscribe(self) -> None:
        position = await asyncio.to_thread(self.readmodel.position)
        # Per-message service logs at DEBUG: at INFO they are two lines per event, which
        # buries everything else (and a replay writes thousands).
        broker = NatsBroker(
            self._url.split(","), max_reconnect_attempts=-1, log_level=logging.DEBUG
        )
        broker.subscriber(
            self.layout.events_filter,
            stream=JStream(self.layout.stream, declare=False),
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=position + 1
            ),
            ack_policy=AckPolicy.MANUAL,  # an ordered consumer has nothing to ack
        )(self._handle)
        self._failed = False
        await broker.start()
        self._broker = broker
        self.state = "running"

    async def _handle(self, msg: NatsMessage) -> None:
        if self._failed:
            return
        raw = msg.raw_message
        seq = raw.metadata.sequence.stream
        self.stream_last = max(self.stream_last, seq + raw.metadata.num_pending)
        try:
            notification = notification_from_message(self.layout, seq, raw.subject, raw.data)
        except UndecodableEventError as error:
            if await self._skipped(seq):
                await asyncio.to_thread(self.readmodel.advance, seq)
            else:
                self._fail(seq, error)
            return
        try:
            event = self.app.mapper.to_domain_event(notification)
            await asyncio.to_thread(self.readmodel.apply, seq, event)
        except Exception as error:  # noqa: BLE001 - any failure parks the projection here
            self._fail(seq, error)
            return
        self._failures = 0

    async def _skipped(self, seq: int) -> bool:
        """Whether an operator recorded that readers may pass this message."""
        store = getattr(self.app.recorder, "store", None)
        if store is None:
            return False
        pending = asyncio.run_coroutine_threadsafe(store.is_skipped(seq), store.conn.loop)
        return bool(await asyncio.wrap_future(pending))

    def _fail(self, seq: int, error: Exception) -> None:
        self._failed = True
        self.state = "error"
        self.error = f"stopped at {seq}: {error}"
        log.error("projection %s %s", self.name, self.error)
        if isinstance(error, UndecodableEventError):
            # Waits for an operator: `cloudcc events skip`, then a restart resumes.
            self.error += " (inspect with `cloudcc events show`, skip with `cloudcc events skip`)"
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        # Back off while the cause stays (an operator may take a while to decide).
        self._failures += 1
        await asyncio.sleep(min(self.retry_after * 2 ** (self._failures - 1), 60.0))
        await self._close_broker()
        try:
            await self._subscribe()
        except Exception as error:  # noqa: BLE001
            self.error = f"resubscribe failed: {error}"
            self._retry = asyncio.get_running_loop().create_task(self._restart())
            return
        self.error = None

    async def _close_broker(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.stop()

    async def stop(self) -> None:
        for task in (self._retry, self._watch):
            if task is not None:
                task.cancel()
        await self._close_broker()
        self.state = "stopped"

    def health(self) -> dict[str, Any]:
        position = self.readmodel.position()
        return {
            "state": self.state,
            "position": position,
            "lag": max(self.stream_last - position, 0),
            "error": self.error,
        }
