"""The health report behind `GET /health` and `cloudcc status`.

web/ must not import deploy/, so the runtime is described here by the few attributes the
report reads; `deploy.runtime.Runtime` satisfies these protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from nats.aio.client import Client as NATS


class ServiceView(Protocol):
    @property
    def name(self) -> str: ...

    def health(self) -> dict[str, Any]: ...


class RuntimeView(Protocol):
    @property
    def nc(self) -> NATS: ...

    @property
    def nats_public_url(self) -> str: ...

    @property
    def services(self) -> Sequence[ServiceView]: ...


def health_report(runtime: RuntimeView) -> dict[str, Any]:
    """Return {"status", "nats", "projections", "services"}; status is "ok" or "degraded".

    A service whose health has a "positions" key (one position per stream it follows)
    or a "position" key follows the event log, so it is also listed under "projections"
    with its position(s), lag and state.
    """
    nc = runtime.nc
    connected = nc.is_connected
    current = nc.connected_url
    nats: dict[str, Any] = {
        # The node actually connected to (one of a cluster), never with credentials.
        "url": f"{current.scheme}://{current.hostname}:{current.port}"
        if current is not None
        else runtime.nats_public_url,
        "connected": connected,
        "server": _server_version(nc) if connected else None,
    }
    services: dict[str, dict[str, Any]] = {}
    projections: dict[str, dict[str, Any]] = {}
    for service in runtime.services:
        try:
            health = dict(service.health())
        except Exception as exc:  # noqa: BLE001 - one broken service must not hide the rest
            health = {"state": "error", "error": f"health() failed: {exc!r}"}
        services[service.name] = health
        if "position" in health or "positions" in health:
            projections[service.name] = {
                key: health[key]
                for key in ("position", "positions", "lag", "state")
                if key in health
            }
    degraded = not connected or any(h.get("state") == "error" for h in services.values())
    return {
        "status": "degraded" if degraded else "ok",
        "nats": nats,
        "projections": projections,
        "services": services,
    }


def _server_version(nc: NATS) -> str | None:
    v = nc.connected_server_version
    if v.major == 0 and v.prerelease == "unknown":
        return None
    return f"nats-server {v.major}.{v.minor}.{v.patch}" + (
        f"-{v.prerelease}" if v.prerelease else ""
    )
