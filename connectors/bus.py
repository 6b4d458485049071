"""The fact subscribers: FACTS on JetStream in, connectors.handlers out.

One faststream subscriber per fact kind (`facts.*.<kind>`), each a durable pull consumer
`facts-<kind>` on the FACTS stream: every process that registers them shares the work.
Acks are manual (faststream's default REJECT_ON_ERROR would `term` a message on the first
exception and it would never come back), and each message ends in exactly one of:

- decoded and handled (applied, duplicate, rejected by the domain): acked;
- not decodable as its subject's kind, or its tenant is not its subject's: parked on
  `facts.parked.<tenant>` with the reason, then acked, so the rest keeps flowing;
- the store failed (OperationalError) or a concurrent writer won (IntegrityError), or the
  fact came early (`deferred`): nacked with a delay, to be delivered again;
- anything else unexpected: nacked with a delay too, and parked once it has been
  delivered `max_deliveries` times, so a bug cannot hold a message for ever.

The domain applications are synchronous: every call goes through the AsyncRunner's
worker threads, never on the broker's loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec
from eventsourcing.persistence import IntegrityError, OperationalError
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub

from connectors.facts import KINDS, PARKED_PREFIX, STREAM, AnyFact, Parked, ensure_facts_stream
from connectors.handlers import FactApps, handle
from domain.asyncapp import AsyncRunner

__all__ = ["FactSubscriber", "ensure_facts_stream", "register_fact_subscribers"]

log = logging.getLogger(__name__)

RETRY_DELAY = 2.0  # seconds before a nacked fact comes back
MAX_DELIVERIES = 10


class FactSubscriber:
    """Decodes, handles and acknowledges the facts of one kind."""

    def __init__(
        self,
        kind: str,
        broker: NatsBroker,
        apps: FactApps,
        runner: AsyncRunner,
        *,
        retry_delay: float = RETRY_DELAY,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        self.kind = kind
        self.type: Any = KINDS[kind]
        self.broker = broker
        self.apps = apps
        self.runner = runner
        self.retry_delay = retry_delay
        self.max_deliveries = max_deliveries

    async def on_message(self, msg: NatsMessage) -> None:
        subject = msg.raw_message.subject
        tenant = subject.split(".")[1] if subject.count(".") == 2 else "_"
        if tenant == "parked":
            # `facts.parked.<tenant>` matches `facts.*.<kind>` for a tenant named like a
            # kind: a parked record, never a fact.
            await msg.ack()
            return
        try:
            fact: AnyFact = msgspec.json.decode(msg.body, type=self.type)
        except msgspec.MsgspecError as error:
            await self._park(msg, tenant, f"undecodable {self.kind} fact: {error}")
            return
        if fact.tenant_id != tenant:
            await self._park(msg, tenant, f"fact of tenant {fact.tenant_id!r} on {subject}")
            return
        try:
            outcome = await self.runner(handle, fact, self.apps)
        except (OperationalError, IntegrityError) as error:
            log.warning("fact %s on %s: will retry: %s", fact.fact_id, subject, error)
            await msg.nack(delay=self.retry_delay)
            return
        except Exception as error:  # noqa: BLE001 - a bug must not stop the other facts
            log.exception("fact %s on %s failed", fact.fact_id, subject)
            await self._retry_or_park(msg, tenant, f"handler failed: {error!r}")
            return
        log.info("fact %s on %s: %s", fact.fact_id, subject, outcome)
        if outcome.startswith("deferred"):
            await self._retry_or_park(msg, tenant, outcome)
        else:
            await msg.ack()

    async def _retry_or_park(self, msg: NatsMessage, tenant: str, reason: str) -> None:
        if msg.raw_message.metadata.num_delivered >= self.max_deliveries:
            await self._park(msg, tenant, f"{reason} (after {self.max_deliveries} deliveries)")
        else:
            await msg.nack(delay=self.retry_delay)

    async def _park(self, msg: NatsMessage, tenant: str, reason: str) -> None:
        subject = msg.raw_message.subject
        log.error("parked a message of %s: %s", subject, reason)
        parked = Parked(
            subject=subject,
            reason=reason,
            payload=msg.body.decode("utf-8", errors="replace"),
            at=datetime.now(UTC),
        )
        # Dedupe on the original's position: a park retried after a lost ack is one record.
        seq = msg.raw_message.metadata.sequence.stream
        await self.broker.publish(
            msgspec.json.encode(parked),
            f"{PARKED_PREFIX}.{tenant}",
            headers={"Nats-Msg-Id": f"parked-{seq}"},
            stream=STREAM,
        )
        await msg.ack()


def register_fact_subscribers(
    broker: NatsBroker,
    apps: FactApps,
    runner: AsyncRunner,
    *,
    retry_delay: float = RETRY_DELAY,
    max_deliveries: int = MAX_DELIVERIES,
) -> list[FactSubscriber]:
    """Subscribe the fact handlers on `broker` (before it starts); the FACTS stream must
    exist (connectors.facts.ensure_facts_stream): faststream is told not to declare it."""
    subscribers = []
    for kind in KINDS:
        subscriber = FactSubscriber(
            kind, broker, apps, runner, retry_delay=retry_delay, max_deliveries=max_deliveries
        )
        broker.subscriber(
            f"facts.*.{kind}",
            stream=JStream(STREAM, declare=False),
            durable=f"facts-{kind}",
            # One at a time: faststream handles a fetched batch concurrently, and the facts
            # of one call must be applied in the order the switch reported them.
            pull_sub=PullSub(batch_size=1, timeout=1.0),
            ack_policy=AckPolicy.MANUAL,
        )(subscriber.on_message)
        subscribers.append(subscriber)
    return subscribers
