"""The fact consumers: FACTS on JetStream in, connectors.handlers out.

One durable pull consumer per fact kind (`facts-<kind>` on `facts.*.<kind>`): every
process that runs them shares the work. Facts are handled side by side as they are
fetched, except that facts with the same ordering key — one call, one chat session, one
email thread (connectors.facts.ordering_key) — are handled one after the other in stream
order; the fetching goes on meanwhile, up to MAX_IN_FLIGHT facts in hand. Each message ends in exactly one of:

- decoded and handled (applied, duplicate, rejected by the domain): acked;
- not decodable as its subject's kind, or its tenant is not its subject's: parked on
  `facts.parked.<tenant>` with the reason, then acked, so the rest keeps flowing;
- the store failed (OperationalError) or a concurrent writer won (IntegrityError), or the
  fact came early (`deferred`): nacked with a delay, to be delivered again;
- anything else unexpected: nacked with a delay too, and parked once it has been
  delivered `max_deliveries` times, so a bug cannot hold a message for ever.

Why nats-py here and not a faststream subscriber, as at first: a faststream pull
subscriber handles one message per fetch in order, or a batch all at once; facts need
"in order per call, side by side across calls". At 50 calls a second the one-at-a-time
consumer was the queue every call waited in (five facts a call, each a fetch, a domain
command and an ack in turn), and faststream's per-message machinery was a fifth of the
process's CPU.

The domain applications are synchronous: every call goes through the AsyncRunner's
worker threads, never on the consumer's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import msgspec
from eventsourcing.persistence import IntegrityError, OperationalError
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from connectors.facts import (
    KINDS,
    PARKED_PREFIX,
    STREAM,
    AnyFact,
    Parked,
    ensure_facts_stream,
    ordering_key,
)
from connectors.handlers import FactApps, handle
from domain.asyncapp import AsyncRunner

__all__ = ["FactConsumer", "ensure_facts_stream", "start_fact_consumers"]

log = logging.getLogger(__name__)

RETRY_DELAY = 2.0  # seconds before a nacked fact comes back
MAX_DELIVERIES = 10
BATCH = 64  # facts fetched at once, at most
GATHER = 0.005  # seconds a fetch waits for more once one fact has arrived
MAX_IN_FLIGHT = 256  # facts being handled at once by one consumer (below max_ack_pending)
ACK_WAIT = 30.0  # seconds a fetched fact stays with this process before redelivery


class FactConsumer:
    """Fetches, decodes, handles and acknowledges the facts of one kind."""

    def __init__(
        self,
        kind: str,
        js: JetStreamContext,
        apps: FactApps,
        runner: AsyncRunner,
        *,
        retry_delay: float = RETRY_DELAY,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        self.kind = kind
        self.type: Any = KINDS[kind]
        self.js = js
        self.apps = apps
        self.runner = runner
        self.retry_delay = retry_delay
        self.max_deliveries = max_deliveries
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        # The last task of each ordering key still running, and a bound on facts in hand.
        self._lanes: dict[str, asyncio.Task[bool]] = {}
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def start(self) -> None:
        subscription = await self.js.pull_subscribe(
            f"facts.*.{self.kind}",
            durable=f"facts-{self.kind}",
            stream=STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ACK_WAIT,
                max_ack_pending=2 * MAX_IN_FLIGHT,
            ),
        )
        self._task = asyncio.get_running_loop().create_task(self._run(subscription))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Facts in hand finish (or are redelivered after ack_wait if the process dies).
        lanes = list(self._lanes.values())
        if lanes:
            await asyncio.wait(lanes, timeout=10)

    async def _run(self, subscription: Any) -> None:
        while True:
            try:
                # Wait for one; then take whatever else is already there. A fetch of a
                # whole batch would wait until the batch is full or its timeout is up,
                # which on a quiet stream is the timeout every fact waits.
                messages = await subscription.fetch(1, timeout=1.0)
                with contextlib.suppress(TimeoutError, NatsTimeoutError):
                    messages += await subscription.fetch(BATCH - 1, timeout=GATHER)
            except (TimeoutError, NatsTimeoutError):
                continue
            except Exception as error:  # noqa: BLE001 - a lost connection: try again
                self.error = f"fetch failed: {error!r}"
                log.warning("facts-%s: %s", self.kind, self.error)
                await asyncio.sleep(1.0)
                continue
            self.error = None
            for msg in messages:
                await self._in_flight.acquire()
                try:
                    fact = await self._decode(msg)
                except Exception as error:  # noqa: BLE001 - e.g. parking it failed
                    # Not acked: it comes back after ack_wait and is tried again.
                    self._in_flight.release()
                    self.error = f"{msg.subject}: {error!r}"
                    log.warning("facts-%s: %s", self.kind, self.error)
                    continue
                if fact is None:
                    self._in_flight.release()
                    continue
                self._enqueue(ordering_key(fact), msg, fact)

    def _enqueue(self, key: str, msg: Msg, fact: AnyFact) -> None:
        """Handle a fact after the ones of its key already under way; the fetch loop goes
        on meanwhile, so one slow fact holds up its own call only."""
        before = self._lanes.get(key)
        task = asyncio.get_running_loop().create_task(self._after(before, msg, fact))
        self._lanes[key] = task

        def done(finished: asyncio.Task[bool]) -> None:
            self._in_flight.release()
            if self._lanes.get(key) is finished:
                del self._lanes[key]

        task.add_done_callback(done)

    async def _after(self, before: asyncio.Task[bool] | None, msg: Msg, fact: AnyFact) -> bool:
        """Handle `fact` once the fact before it in its lane is done; True if it was
        settled (acked), False if it will come again (nacked)."""
        settled = True
        if before is not None:
            try:
                settled = await asyncio.shield(before)
            except (Exception, asyncio.CancelledError):  # noqa: BLE001
                settled = False
        if not settled:
            # The one before comes again later: so must this one, or the lane's order
            # breaks (a hang-up handled before the answer it follows loses the answer).
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.retry_delay + 0.1)
            return False
        try:
            return await self._handle(msg, fact)
        except Exception as error:  # noqa: BLE001 - an ack or nak lost: it comes back
            self.error = f"{msg.subject}: {error!r}"
            log.warning("facts-%s: %s", self.kind, self.error)
            return False

    async def _decode(self, msg: Msg) -> AnyFact | None:
        """The fact in a message, or None once it is parked (or was a parked record)."""
        subject = msg.subject
        tenant = subject.split(".")[1] if subject.count(".") == 2 else "_"
        if tenant == "parked":
            # `facts.parked.<tenant>` matches `facts.*.<kind>` for a tenant named like a
            # kind: a parked record, never a fact.
            await msg.ack()
            return None
        try:
            fact: AnyFact = msgspec.json.decode(msg.data, type=self.type)
        except msgspec.MsgspecError as error:
            await self._park(msg, tenant, f"undecodable {self.kind} fact: {error}")
            return None
        if fact.tenant_id != tenant:
            await self._park(msg, tenant, f"fact of tenant {fact.tenant_id!r} on {subject}")
            return None
        return fact

    async def _handle(self, msg: Msg, fact: AnyFact) -> bool:
        """Handle one fact; True once it is settled (acked or parked)."""
        subject = msg.subject
        tenant = fact.tenant_id
        try:
            outcome = await self.runner(handle, fact, self.apps)
        except (OperationalError, IntegrityError) as error:
            log.warning("fact %s on %s: will retry: %s", fact.fact_id, subject, error)
            await msg.nak(delay=self.retry_delay)
            return False
        except Exception as error:  # noqa: BLE001 - a bug must not stop the other facts
            log.exception("fact %s on %s failed", fact.fact_id, subject)
            return await self._retry_or_park(msg, tenant, f"handler failed: {error!r}")
        log.debug("fact %s on %s: %s", fact.fact_id, subject, outcome)
        if outcome.startswith("deferred"):
            return await self._retry_or_park(msg, tenant, outcome)
        await msg.ack()
        return True

    async def _retry_or_park(self, msg: Msg, tenant: str, reason: str) -> bool:
        if msg.metadata.num_delivered >= self.max_deliveries:
            await self._park(msg, tenant, f"{reason} (after {self.max_deliveries} deliveries)")
            return True
        await msg.nak(delay=self.retry_delay)
        return False

    async def _park(self, msg: Msg, tenant: str, reason: str) -> None:
        log.error("parked a message of %s: %s", msg.subject, reason)
        parked = Parked(
            subject=msg.subject,
            reason=reason,
            payload=msg.data.decode("utf-8", errors="replace"),
            at=datetime.now(UTC),
        )
        # Dedupe on the original's position: a park retried after a lost ack is one record.
        seq = msg.metadata.sequence.stream
        await self.js.publish(
            f"{PARKED_PREFIX}.{tenant}",
            msgspec.json.encode(parked),
            stream=STREAM,
            headers={"Nats-Msg-Id": f"parked-{seq}"},
        )
        await msg.ack()


async def start_fact_consumers(
    js: JetStreamContext,
    apps: FactApps,
    runner: AsyncRunner,
    *,
    retry_delay: float = RETRY_DELAY,
    max_deliveries: int = MAX_DELIVERIES,
) -> list[FactConsumer]:
    """Start a consumer per fact kind; the FACTS stream must exist
    (connectors.facts.ensure_facts_stream). Stop each with `await consumer.stop()`."""
    consumers = []
    for kind in KINDS:
        consumer = FactConsumer(
            kind, js, apps, runner, retry_delay=retry_delay, max_deliveries=max_deliveries
        )
        await consumer.start()
        consumers.append(consumer)
    return consumers
