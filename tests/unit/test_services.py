"""Which parts a `cloudcc up` runs (CLOUDCC_SERVICES), without starting anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.services import register_services
from deploy.settings import Settings, SettingsError
from projections.registry import READMODELS


class FakeRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: list[Any] = []
        self.routes: list[Any] = []

    def add_service(self, service: Any) -> None:
        self.services.append(service)

    def add_route_handlers(self, *handlers: Any) -> None:
        self.routes.extend(handlers)


def run(tmp_path: Path, services: str | None, **more: Any) -> FakeRuntime:
    env = {"CLOUDCC_SERVICES": services} if services else {}
    runtime = FakeRuntime(Settings.from_env(env, data_dir=tmp_path, **more))
    register_services(runtime)
    return runtime


def names(runtime: FakeRuntime) -> set[str]:
    return {service.name for service in runtime.services}


def test_everything_by_default(tmp_path: Path) -> None:
    runtime = run(tmp_path, None)
    assert names(runtime) == {"domain", "facts", "feeds", "telephony", *READMODELS}
    assert runtime.routes


def test_one_part_per_process(tmp_path: Path) -> None:
    router = run(tmp_path / "r", "routing")
    assert names(router) == {"domain", "feeds", "routing"} and not router.routes
    facts = run(tmp_path / "f", "facts,api")
    # The API answers from the customers read model and checks keys with the access one:
    # that process keeps both up to date.
    assert names(facts) == {"domain", "facts", "feeds", "customers", "access"} and facts.routes
    models = run(tmp_path / "m", "readmodels")
    assert names(models) == {"domain", "feeds", *READMODELS}
    # The bridge takes inbound calls from the dialplan: that process keeps it up to date.
    bridge = run(tmp_path / "t", "telephony")
    assert names(bridge) == {"domain", "feeds", "telephony", "dialplan"}


def test_the_switch_is_builtin_or_a_freeswitch_url(tmp_path: Path) -> None:
    assert Settings.from_env({}, data_dir=tmp_path).switch == "builtin"
    url = "freeswitch://:ClueCon@10.0.0.5:8021"
    assert Settings.from_env({"CLOUDCC_SWITCH": url}, data_dir=tmp_path).switch == url
    with pytest.raises(SettingsError, match="CLOUDCC_SWITCH"):
        Settings.from_env({"CLOUDCC_SWITCH": "asterisk://x"}, data_dir=tmp_path)


def test_unknown_parts_and_a_partial_demo_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no service routng"):
        run(tmp_path, "routng")
    with pytest.raises(SettingsError, match="--demo runs every service"):
        run(tmp_path, "facts", demo=True)
