"""`DemoService`: the runtime service of `cloudcc up --demo`.

It seeds tenant "demo" (deploy.demo.seed) on a worker thread once the domain runs, then
runs `Traffic` (deploy.demo.traffic) until it stops. `CLOUDCC_DEMO_SPEED=10` runs the
traffic ten times faster.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deploy.demo.seed import DEMO_PASSWORD, SUPERVISOR_LOGIN, TENANT, seed
from deploy.demo.traffic import Traffic
from deploy.settings import SettingsError
from projections.boards import AgentBoardReadModel

if TYPE_CHECKING:
    from deploy.services import DomainService

log = logging.getLogger(__name__)

SPEED_ENV = "CLOUDCC_DEMO_SPEED"


def speed_from_env(env: Mapping[str, str] = os.environ) -> float:
    """`CLOUDCC_DEMO_SPEED`: read here, not in deploy.settings, as only the demo has it."""
    raw = env.get(SPEED_ENV) or "1"
    try:
        speed = float(raw)
    except ValueError:
        raise SettingsError(f"{SPEED_ENV}={raw!r} is not a number") from None
    if not 0.01 <= speed <= 1000:
        raise SettingsError(f"{SPEED_ENV} is between 0.01 and 1000, not {speed:g}")
    return speed


class DemoService:
    """Seeds tenant "demo" once the domain runs, then keeps traffic flowing until stopped."""

    name = "demo"

    def __init__(
        self,
        domain: DomainService,
        *,
        speed: float | None = None,
        calls_per_minute: float = 4.0,
        messages_per_minute: float = 4.0,
        rng: random.Random | None = None,
    ) -> None:
        self.domain = domain
        self.speed = speed_from_env() if speed is None else speed
        self.calls_per_minute = calls_per_minute
        self.messages_per_minute = messages_per_minute
        self.rng = rng
        self.state = "stopped"
        self.error: str | None = None
        self.traffic: Traffic | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, runtime: Any) -> None:
        # Seeding takes a few seconds: the web app comes up meanwhile.
        self.state = "seeding"
        self._task = asyncio.ensure_future(self._run(runtime))

    async def _run(self, runtime: Any) -> None:
        domain = self.domain
        try:
            setup = await domain.runner(seed, domain.apps)
            board = domain.readmodels["agent_board"]
            assert isinstance(board, AgentBoardReadModel)
            traffic = Traffic(
                domain.apps,
                domain.runner,
                setup,
                runtime.nc.jetstream(),
                runtime.nc,
                board,
                speed=self.speed,
                calls_per_minute=self.calls_per_minute,
                messages_per_minute=self.messages_per_minute,
                rng=self.rng,
            )
            await traffic.start()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.state, self.error = "error", f"{type(error).__name__}: {error}"
            log.exception("demo: could not start")
            return
        self.traffic, self.state = traffic, "running"
        if setup.created:
            made = ", ".join(f"{n} {what}" for what, n in setup.created.items())
            said = f"demo tenant '{TENANT}' seeded ({made}); traffic flowing"
        else:
            said = f"demo tenant '{TENANT}' found, nothing to seed; traffic flowing"
        said += (
            f"; sign in at /signin as organisation '{TENANT}', login {SUPERVISOR_LOGIN} "
            f"(or any demo user), password {DEMO_PASSWORD}; "
            f"a sample shop with the live chat widget is at /site/{TENANT}"
        )
        log.info("demo: %s (speed %g)", said, self.speed)
        print(f"cloudcc: {said}", flush=True)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        traffic, self.traffic = self.traffic, None
        if traffic is not None:
            await traffic.stop()
        self.state = "stopped"

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"state": self.state, "error": self.error, "tenant": TENANT}
        if self.traffic is not None:
            report["speed"] = self.speed
            report["traffic"] = dict(self.traffic.stats)
        return report
