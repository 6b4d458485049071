"""The dialplan read model: hotlines to tenants and targets, published IVR flows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from streams import feed, reversed_streams, round_robin

from domain.apps import DomainApps
from domain.ivr import Node, NodeKind
from domain.vocabulary import Package
from projections.dialplan import DialplanReadModel
from projections.replay import catch_up


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> Iterator[DomainApps]:
    built = DomainApps.build(transcoder_env)
    yield built
    built.close()


def setup(apps: DomainApps) -> dict[str, object]:
    apps.tenants.register("acme", "Acme", Package.CALL_CENTER, ["02873000111", "02873000222"])
    queue = apps.queues.create("acme", "Sales")
    apps.queues.set_recording_policy("acme", queue, True)
    apps.tenants.register("bravo", "Bravo", Package.CALL_CENTER, ["02873000333"])
    flow = apps.ivr.draft("acme", "Main menu")
    apps.ivr.set_node(
        "acme", flow, Node("hello", NodeKind.MENU, prompt="Press 1", choices={"1": "q"})
    )
    apps.ivr.set_node("acme", flow, Node("q", NodeKind.QUEUE, queue_id=queue))
    apps.ivr.set_entry("acme", flow, "hello")
    apps.ivr.publish("acme", flow)
    apps.ivr.set_node(
        "acme", flow, Node("hello", NodeKind.MENU, prompt="Press 1 now", choices={"1": "q"})
    )
    apps.ivr.publish("acme", flow)
    apps.tenants.route_hotline("acme", "02873000111", "ivr", flow)
    apps.tenants.route_hotline("acme", "02873000222", "queue", queue)
    apps.tenants.add_hotline("bravo", "02873000444")
    apps.tenants.remove_hotline("bravo", "02873000444")
    return {"queue": queue, "flow": flow}


def test_hotlines_say_their_tenant_and_target(apps: DomainApps, tmp_path: Path) -> None:
    ids = setup(apps)
    model = DialplanReadModel(tmp_path / "d.sqlite")
    catch_up(model, apps)
    menu = model.route("+842873000111")
    assert menu is not None and menu.tenant_id == "acme"
    assert (menu.kind, menu.target_id) == ("ivr", ids["flow"])
    direct = model.route("+842873000222")
    assert direct is not None and (direct.kind, direct.target_id) == ("queue", ids["queue"])
    unrouted = model.route("+842873000333")
    assert unrouted is not None and unrouted.tenant_id == "bravo" and unrouted.kind is None
    assert model.route("+842873000444") is None  # removed
    assert model.route("+84999") is None


def test_flows_are_kept_per_published_version_and_tenant(apps: DomainApps, tmp_path: Path) -> None:
    ids = setup(apps)
    model = DialplanReadModel(tmp_path / "d.sqlite")
    catch_up(model, apps)
    flow = ids["flow"]
    assert isinstance(flow, type(uuid4()))
    latest = model.flow("acme", flow)
    assert latest is not None and latest.version == 2 and latest.entry == "hello"
    assert latest.node("hello").prompt == "Press 1 now"
    assert latest.node("q").queue_id == ids["queue"]
    first = model.flow("acme", flow, 1)
    assert first is not None and first.node("hello").prompt == "Press 1"
    assert model.flow("bravo", flow) is None  # another tenant's flow, by its id


@pytest.mark.parametrize("order", [round_robin, reversed_streams])
def test_any_interleaving_gives_the_same_tables(
    apps: DomainApps, tmp_path: Path, order: object
) -> None:
    setup(apps)
    live = DialplanReadModel(tmp_path / "live.sqlite")
    catch_up(live, apps)
    other = DialplanReadModel(tmp_path / "other.sqlite")
    feed(other, apps, order)  # type: ignore[arg-type]
    for table in ("hotlines", "tenant_ids", "users", "queues", "flow_drafts", "flow_versions"):
        query = f"SELECT * FROM {table} ORDER BY 1, 2"
        assert [tuple(r) for r in live.connect().execute(query)] == [
            tuple(r) for r in other.connect().execute(query)
        ]


def test_users_are_found_by_extension_or_endpoint_within_their_tenant(
    apps: DomainApps, tmp_path: Path
) -> None:
    setup(apps)
    an = apps.agents.create_user("acme", "An", "an", "agent", package=Package.CALL_CENTER)
    apps.agents.set_extension("acme", an, "2001")
    apps.agents.add_endpoint("acme", an, "sip_phone", "an-desk")
    apps.agents.add_endpoint("acme", an, "webrtc", "")
    other = apps.agents.create_user("bravo", "Bo", "bo", "agent", package=Package.CALL_CENTER)
    apps.agents.set_extension("bravo", other, "2001")
    model = DialplanReadModel(tmp_path / "d.sqlite")
    catch_up(model, apps)
    line = model.user("acme", extension="2001")
    assert line is not None and line.user_id == an
    assert line.endpoints == [("sip_phone", "an-desk"), ("webrtc", "")]
    by_phone = model.user("acme", address="an-desk")
    assert by_phone is not None and by_phone.user_id == an
    assert model.user("bravo", address="an-desk") is None
    bravo = model.user("bravo", extension="2001")
    assert bravo is not None and bravo.user_id == other
    apps.agents.remove_endpoint("acme", an, "sip_phone", "an-desk")
    catch_up(model, apps)
    assert model.user("acme", address="an-desk") is None
    assert model.hotlines("acme") == ["+842873000111", "+842873000222"]


def test_queues_say_whether_their_calls_are_recorded(apps: DomainApps, tmp_path: Path) -> None:
    ids = setup(apps)
    quiet = apps.queues.create("acme", "HR")
    model = DialplanReadModel(tmp_path / "d.sqlite")
    catch_up(model, apps)
    queue = ids["queue"]
    assert isinstance(queue, type(uuid4()))
    assert model.records("acme", queue) and not model.records("acme", quiet)
    assert not model.records("bravo", queue)  # through another tenant: no
    apps.queues.set_recording_policy("acme", queue, False)
    catch_up(model, apps)
    assert not model.records("acme", queue)
