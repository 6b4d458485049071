"""The access read model: tenants' API keys, checked by their hash, revoked for good."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.apps import DomainApps
from domain.vocabulary import Package
from projections.access import AccessReadModel
from projections.replay import catch_up


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> Iterator[DomainApps]:
    built = DomainApps.build(transcoder_env)
    yield built
    built.close()


def test_a_key_opens_its_own_tenant_until_it_is_revoked(apps: DomainApps, tmp_path: Path) -> None:
    apps.tenants.register("acme", "Acme", Package.CALL_CENTER, ["02873000111"])
    apps.tenants.register("bravo", "Bravo", Package.CALL_CENTER, ["02873000222"])
    acme = apps.tenants.issue_api_key("acme", "CRM")
    bravo = apps.tenants.issue_api_key("bravo", "BI")
    model = AccessReadModel(tmp_path / "access.sqlite")
    catch_up(model, apps)
    assert model.authenticate(acme) == "acme" and model.authenticate(bravo) == "bravo"
    prefix, key_id, secret = acme.split(".")
    for wrong in (
        f"{prefix}.{key_id}.{secret[:-1]}x",  # a wrong secret
        f"xx.{key_id}.{secret}",
        f"{prefix}.{key_id}",
        f"{prefix}.{'0' * 16}.{secret}",  # an unknown key
        "",
        "garbage",
    ):
        assert model.authenticate(wrong) is None, wrong
    assert [k["name"] for k in model.keys("acme")] == ["CRM"]
    apps.tenants.revoke_api_key("acme", key_id)
    catch_up(model, apps)
    assert model.authenticate(acme) is None and model.authenticate(bravo) == "bravo"
    [revoked] = model.keys("acme")
    assert revoked["revoked_at"] is not None and "secret_sha256" not in revoked
