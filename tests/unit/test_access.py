"""The access read model: tenants' API keys, checked by their hash, revoked for good;
users, who sign in with a password checked against its scrypt hash, each in their tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from domain.agents import InvalidUser
from domain.apps import DomainApps
from domain.passwords import WeakPassword
from domain.vocabulary import Package
from projections.access import AccessReadModel, Principal
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


def _user(apps: DomainApps, tenant: str, login: str, role: str, password: str | None) -> str:
    package = Package.CONTACT_CENTER
    user_id = apps.agents.create_user(
        tenant, f"{login.title()} Nguyễn", login, role, package=package
    )
    if password is not None:
        apps.agents.set_password(tenant, user_id, password)
    return str(user_id)


def test_a_user_signs_in_with_the_right_password_only(apps: DomainApps, tmp_path: Path) -> None:
    apps.tenants.register("acme", "Acme", Package.CONTACT_CENTER, ["02873000111"])
    an = _user(apps, "acme", "an@acme.vn", "agent", "mật khẩu của An")
    _user(apps, "acme", "binh@acme.vn", "agent", None)  # no password yet
    model = AccessReadModel(tmp_path / "access.sqlite")
    catch_up(model, apps)
    principal = model.sign_in("acme", " AN@acme.vn ", "mật khẩu của An")
    assert principal == Principal(
        user_id=an, tenant_id="acme", login="an@acme.vn", name="An@Acme.Vn Nguyễn", role="agent"
    )
    assert model.sign_in("acme", "an@acme.vn", "mật khẩu của an") is None
    assert model.sign_in("acme", "nobody@acme.vn", "mật khẩu của An") is None
    assert model.sign_in("acme", "binh@acme.vn", "") is None
    assert model.user(an) == principal and model.user(uuid4()) is None
    # The log holds the hash only.
    stored = model.connect().execute("SELECT password_hash FROM users WHERE id = ?", (an,))
    assert stored.fetchone()[0].startswith("scrypt$")


def test_a_deactivated_user_signs_in_no_more_and_loses_the_session(
    apps: DomainApps, tmp_path: Path
) -> None:
    apps.tenants.register("acme", "Acme", Package.CONTACT_CENTER, ["02873000111"])
    an = _user(apps, "acme", "an", "supervisor", "mật khẩu của An")
    model = AccessReadModel(tmp_path / "access.sqlite")
    apps.agents.deactivate("acme", UUID(an), "left")
    catch_up(model, apps)
    assert model.sign_in("acme", "an", "mật khẩu của An") is None and model.user(an) is None
    apps.agents.reactivate("acme", UUID(an))
    apps.agents.set_role("acme", UUID(an), "agent", package=Package.CONTACT_CENTER)
    catch_up(model, apps)
    signed_in = model.sign_in("acme", "an", "mật khẩu của An")
    assert signed_in is not None and signed_in.role == "agent"


def test_the_same_login_in_two_tenants_are_two_users(apps: DomainApps, tmp_path: Path) -> None:
    apps.tenants.register("acme", "Acme", Package.CONTACT_CENTER, ["02873000111"])
    apps.tenants.register("bravo", "Bravo", Package.CONTACT_CENTER, ["02873000222"])
    at_acme = _user(apps, "acme", "an", "agent", "mật khẩu ở Acme")
    at_bravo = _user(apps, "bravo", "an", "tenant_admin", "mật khẩu ở Bravo")
    operator = _user(apps, "_", "an", "operator", "mật khẩu nhà mạng")
    model = AccessReadModel(tmp_path / "access.sqlite")
    catch_up(model, apps)
    acme, bravo = (
        model.sign_in("acme", "an", "mật khẩu ở Acme"),
        model.sign_in("bravo", "an", "mật khẩu ở Bravo"),
    )
    assert acme is not None and (acme.user_id, acme.tenant_id) == (at_acme, "acme")
    assert bravo is not None and (bravo.user_id, bravo.role) == (at_bravo, "tenant_admin")
    assert model.sign_in("bravo", "an", "mật khẩu ở Acme") is None
    assert model.sign_in("acme", "an", "mật khẩu ở Bravo") is None
    assert model.sign_in("acme", "an", "mật khẩu nhà mạng") is None
    op = model.sign_in("_", "an", "mật khẩu nhà mạng")
    assert op is not None and (op.user_id, op.role) == (operator, "operator")


def test_a_password_reaches_the_event_log_only_as_its_hash(apps: DomainApps) -> None:
    apps.tenants.register("acme", "Acme", Package.CONTACT_CENTER, ["02873000111"])
    an = UUID(_user(apps, "acme", "an", "agent", "mật khẩu của An"))
    recorded = apps.agents.recorder.select_events(an)
    payloads = b"".join(bytes(r.state) for r in recorded)
    assert b"scrypt$" in payloads and "mật khẩu của An".encode() not in payloads
    assert apps.agents.get("acme", an)["has_password"] is True
    with pytest.raises(InvalidUser, match="hash"):
        apps.agents.repository.get(an).set_password("mật khẩu của An")
    with pytest.raises(WeakPassword):
        apps.agents.set_password("acme", an, "short")
