"""Settings of a cloudcc process, and the one place environment variables are read.

Every other module receives a `Settings` (usually through the runtime) instead of looking
at `os.environ`, so what a process was configured with is visible in one object and tests
can build settings from a plain dict.

| field           | environment          | default                                   |
|-----------------|----------------------|-------------------------------------------|
| `data_dir`      | `CLOUDCC_DATA`       | `./var`, made absolute                    |
| `nats_url`      | `NATS_URL`           | unset: start an embedded nats-server      |
| `http_host`     | `CLOUDCC_HOST`       | `127.0.0.1`                               |
| `http_port`     | `CLOUDCC_PORT`       | `8000`                                    |
| `sync_interval` | `CLOUDCC_NATS_SYNC`  | `always` (fsync every append before ack)  |
| `replicas`      | `CLOUDCC_REPLICAS`   | `1`; set `3` when `NATS_URL` is a cluster |
| `demo`          | (`cloudcc up --demo`)| `False`                                   |
| `wrap_up_seconds` | `CLOUDCC_WRAP_UP_SECONDS` | `15`: after a call, before routing offers the agent more |
| `services`      | `CLOUDCC_SERVICES`   | `all`; else a comma list of `facts`, `api`, `telephony`, `readmodels` (every read model) and read-model names: what this process runs (scaled out, one process per part) |
| `switch`        | `CLOUDCC_SWITCH`     | `builtin` (the built-in switch, in process); or `freeswitch://:PASSWORD@HOST:PORT` (FreeSWITCH's Event Socket) |
| `secure_cookies` | `CLOUDCC_SECURE_COOKIES` | off (`0`): the pages' cookies (session, CSRF, language) work over plain http, as at the embedded http://127.0.0.1; set `1` when browsers reach cloudcc through a TLS proxy (https), which makes them Secure: sent over https only |

`NATS_URL` may list several servers separated by commas (`nats://a:4222,nats://b:4222`).
Yes/no variables (`CLOUDCC_SECURE_COOKIES`) take `1`/`true`/`yes`/`on` or
`0`/`false`/`no`/`off` (any case); unset or empty is the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """An environment variable or option holds a value cloudcc cannot use."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    data_dir: Path
    nats_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    sync_interval: str = "always"
    replicas: int = 1
    demo: bool = False
    wrap_up_seconds: int = 15
    services: frozenset[str] = frozenset({"all"})
    switch: str = "builtin"
    secure_cookies: bool = False

    @property
    def embedded(self) -> bool:
        """True when this process starts its own nats-server."""
        return self.nats_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
        """Read settings from `env`; keyword arguments (command-line options) win."""
        values: dict[str, Any] = {
            "data_dir": env.get("CLOUDCC_DATA") or "./var",
            # An empty NATS_URL (e.g. `NATS_URL= cloudcc up`) means embedded, like unset.
            "nats_url": env.get("NATS_URL") or None,
            "http_host": env.get("CLOUDCC_HOST") or "127.0.0.1",
            "http_port": _int(env, "CLOUDCC_PORT", 8000),
            "sync_interval": env.get("CLOUDCC_NATS_SYNC") or "always",
            "replicas": _int(env, "CLOUDCC_REPLICAS", 1),
            "wrap_up_seconds": _int(env, "CLOUDCC_WRAP_UP_SECONDS", 15),
            "services": frozenset(
                part.strip() for part in (env.get("CLOUDCC_SERVICES") or "all").split(",")
            )
            - {""},
            "switch": env.get("CLOUDCC_SWITCH") or "builtin",
            "secure_cookies": _bool(env, "CLOUDCC_SECURE_COOKIES", False),
        }
        values.update(overrides)
        values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
        settings = cls(**values)
        if not 0 <= settings.http_port <= 65535:
            raise SettingsError(f"HTTP port {settings.http_port} is not in 0..65535")
        if settings.replicas < 1:
            raise SettingsError(f"CLOUDCC_REPLICAS must be at least 1, not {settings.replicas}")
        if settings.switch != "builtin" and not settings.switch.startswith("freeswitch://"):
            raise SettingsError(
                f"CLOUDCC_SWITCH is `builtin` or `freeswitch://:PASSWORD@HOST:PORT`, "
                f"not {settings.switch!r}"
            )
        if not 0 <= settings.wrap_up_seconds <= 3600:
            raise SettingsError("CLOUDCC_WRAP_UP_SECONDS must be 0 to 3600")
        return settings

    def runs(self, service: str) -> bool:
        """Whether this process runs `service` (`facts`, `api`, or a read model's name)."""
        return (
            "all" in self.services
            or service in self.services
            or (service not in ("facts", "api", "telephony") and "readmodels" in self.services)
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={env[name]!r} is not a yes or no (1/true/yes/on, 0/false/no/off)")
