"""Signing in to the web pages (OP4) on a real `cloudcc up`: the form with its CSRF token,
the session cookie, each tenant's pages walled off from the others, Vietnamese by default
and English on request, the API still opened by keys alone, sign-in throttled per account
and per address, and Secure cookies when CLOUDCC_SECURE_COOKIES is on."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from helpers import ROOT, api_headers, running_instance, wait_for

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.vocabulary import Package
from projections.registry import ACCESS

HANOI, SAIGON = "signin-hanoi", "signin-saigon"
AN_PASSWORD = "mật khẩu của An 2024"
MAI_PASSWORD = "mật khẩu của Mai 2024"


class Site:
    def __init__(self, url: str, apps: DomainApps, data: Path, nats_url: str) -> None:
        self.url, self.apps, self.data, self.nats_url = url, apps, data, nats_url
        self.an: UUID | None = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, follow_redirects=False)


@pytest.fixture(scope="module")
def site(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("signin")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port):
            url = f"http://127.0.0.1:{port}"
            api_headers(url, nats_url, HANOI)  # registers both tenants, with hotlines
            api_headers(url, nats_url, SAIGON)
            site = Site(url, apps, data, nats_url)
            site.an = apps.agents.create_user(
                HANOI, "An Nguyễn", "an@hanoi.vn", "agent", package=Package.CONTACT_CENTER
            )
            apps.agents.set_password(HANOI, site.an, AN_PASSWORD)
            yield site
    finally:
        apps.close()


def csrf_token(http: httpx.Client) -> str:
    """The token of the sign-in form, as a browser would read it (the form's hidden field;
    fetching the form also sets the CSRF cookie it is checked against)."""
    form = http.get("/signin")
    assert form.status_code == 200, form.text
    found = re.search(r'name="_csrf_token" value="([^"]+)"', form.text)
    assert found, form.text
    return found.group(1)


def sign_in(http: httpx.Client, tenant: str, login: str, password: str) -> httpx.Response:
    fields = {"organisation": tenant, "login": login, "password": password}
    return http.post("/signin", data={**fields, "_csrf_token": csrf_token(http)})


def known(site: Site, tenant: str, login: str) -> bool | None:
    """Whether the instance's access read model has the user, with a password (None if
    its file cannot be read). Waiting on it, rather than on sign-ins that fail while the
    read model catches up, keeps those failures from being throttled."""
    try:
        db = sqlite3.connect(f"file:{ACCESS.path(site.data)}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute(
                "SELECT 1 FROM users WHERE tenant_id = ? AND login = ? AND active = 1 "
                "AND password_hash IS NOT NULL",
                (tenant, login.strip().lower()),
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return row is not None


def wait_until_known(site: Site, tenant: str, login: str) -> None:
    wait_for(lambda: known(site, tenant, login), lambda k: k is not False)


@contextlib.contextmanager
def signed_in(site: Site, tenant: str, login: str, password: str) -> Iterator[httpx.Client]:
    """A client with a session, once the access read model knows the user."""
    wait_until_known(site, tenant, login)
    with site.client() as http:
        answer = wait_for(lambda: sign_in(http, tenant, login, password), lambda r: r.is_redirect)
        assert answer.status_code == 303, answer.text
        yield http


def test_an_agent_signs_in_through_the_form_and_is_greeted_in_vietnamese(site: Site) -> None:
    http = site.client()
    assert http.get("/").headers["location"] == "/signin"
    form = http.get("/signin")
    assert "Đăng nhập" in form.text and 'lang="vi"' in form.text
    wait_until_known(site, HANOI, "an@hanoi.vn")
    answer = wait_for(
        lambda: sign_in(http, HANOI, "An@Hanoi.vn", AN_PASSWORD), lambda r: r.is_redirect
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/t/{HANOI}/"
    [cookie] = [c for c in answer.headers.get_list("set-cookie") if "cloudcc_session=" in c]
    attributes = {a.strip().lower() for a in cookie.split(";")}
    assert "httponly" in attributes and "samesite=lax" in attributes
    assert "secure" not in attributes  # plain http: a secure cookie would never come back

    home = http.get(f"/t/{HANOI}/")
    assert home.status_code == 200, home.text
    assert "Xin chào An Nguyễn" in home.text and "Điện thoại viên" in home.text
    assert HANOI in home.text and "Hộp thư hội thoại" in home.text

    english = http.get(f"/t/{HANOI}/?lang=en")
    assert "Hello An Nguyễn" in english.text and "Agent" in english.text
    assert "Conversation inbox" in english.text and 'lang="en"' in english.text
    # The choice is remembered (a cookie) for the pages that follow.
    assert "Hello An Nguyễn" in http.get(f"/t/{HANOI}/").text


def test_a_wrong_password_is_refused_without_saying_which_field_was_wrong(site: Site) -> None:
    with signed_in(site, HANOI, "an@hanoi.vn", AN_PASSWORD):
        pass  # the user is known to the read model by now
    message = "tổ chức, tên đăng nhập hoặc mật khẩu không đúng"
    for tenant, login, password in (
        (HANOI, "an@hanoi.vn", "not An's password"),
        (HANOI, "nobody@hanoi.vn", AN_PASSWORD),
        (SAIGON, "an@hanoi.vn", AN_PASSWORD),
        ("no-such-tenant", "an@hanoi.vn", AN_PASSWORD),
    ):
        http = site.client()
        answer = sign_in(http, tenant, login, password)
        assert answer.status_code == 401 and message in answer.text, (tenant, login)
        assert "cloudcc_session" not in http.cookies
        assert http.get(f"/t/{HANOI}/").headers["location"] == "/signin"


def test_a_form_posted_without_its_csrf_token_is_refused(site: Site) -> None:
    http = site.client()
    http.get("/signin")  # the CSRF cookie alone is not enough: the form must carry it
    fields = {"organisation": HANOI, "login": "an@hanoi.vn", "password": AN_PASSWORD}
    assert http.post("/signin", data=fields).status_code == 403
    assert site.client().post("/signin", data=fields).status_code == 403
    forged = {**fields, "_csrf_token": "forged"}
    assert http.post("/signin", data=forged).status_code == 403
    with signed_in(site, HANOI, "an@hanoi.vn", AN_PASSWORD) as http:
        assert http.post("/signout").status_code == 403
        assert http.get(f"/t/{HANOI}/").status_code == 200  # still signed in


def test_another_organisations_page_is_a_clear_403(site: Site) -> None:
    with signed_in(site, HANOI, "an@hanoi.vn", AN_PASSWORD) as http:
        refused = http.get(f"/t/{SAIGON}/")
        assert refused.status_code == 403
        assert "Trang này thuộc về một tổ chức khác." in refused.text
        assert f'href="/t/{HANOI}/"' in refused.text
        english = http.get(f"/t/{SAIGON}/?lang=en")
        assert english.status_code == 403
        assert "This page belongs to another organisation." in english.text
        assert http.get("/t/_/").status_code == 403  # nor the operator's


def test_signing_out_ends_the_session(site: Site) -> None:
    with signed_in(site, HANOI, "an@hanoi.vn", AN_PASSWORD) as http:
        session = http.cookies["cloudcc_session"]
        token = re.search(r'name="_csrf_token" value="([^"]+)"', http.get(f"/t/{HANOI}/").text)
        assert token
        out = http.post("/signout", data={"_csrf_token": token.group(1)})
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        assert http.get(f"/t/{HANOI}/").headers["location"] == "/signin"
    # The old cookie, kept by someone, opens nothing either: the session is gone.
    with site.client() as stale:
        stale.cookies.set("cloudcc_session", session)
        assert stale.get(f"/t/{HANOI}/").headers["location"] == "/signin"


def test_signing_in_again_starts_a_new_session(site: Site) -> None:
    with signed_in(site, HANOI, "an@hanoi.vn", AN_PASSWORD) as http:
        first = http.cookies["cloudcc_session"]
        assert sign_in(http, HANOI, "an@hanoi.vn", AN_PASSWORD).status_code == 303
        assert http.cookies["cloudcc_session"] != first
        with site.client() as stale:
            stale.cookies.set("cloudcc_session", first)
            assert stale.get(f"/t/{HANOI}/").status_code == 303


def test_a_deactivated_users_session_is_refused_on_the_next_request(site: Site) -> None:
    apps = site.apps
    mai = apps.agents.create_user(
        HANOI, "Mai Trần", "mai@hanoi.vn", "supervisor", package=Package.CONTACT_CENTER
    )
    apps.agents.set_password(HANOI, mai, MAI_PASSWORD)
    with signed_in(site, HANOI, "mai@hanoi.vn", MAI_PASSWORD) as http:
        assert "Giám sát viên" in http.get(f"/t/{HANOI}/").text
        apps.agents.deactivate(HANOI, mai, "left the company")
        refused = wait_for(lambda: http.get(f"/t/{HANOI}/"), lambda r: r.status_code != 200)
        assert refused.status_code == 303 and refused.headers["location"] == "/signin"
        # The session was dropped: Litestar overwrites the cookie with "null".
        assert http.cookies.get("cloudcc_session") in (None, "null")
        assert sign_in(http, HANOI, "mai@hanoi.vn", MAI_PASSWORD).status_code == 401


def test_the_cli_adds_a_tenant_admin_and_an_operator_who_sign_in(site: Site) -> None:
    env = {**os.environ, "CLOUDCC_DATA": str(site.data), "NATS_URL": site.nats_url}

    def cloudcc(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "deploy.cli", *args],
            check=False,  # the tests look at refusals (exit code 1) too
            cwd=ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = cloudcc(
        "user", "add", SAIGON, "lan@saigon.vn", "--name", "Lan Lê", "--role", "tenant_admin"
    )
    assert added.returncode == 0, added.stderr
    UUID(added.stdout.strip())
    again = cloudcc("user", "add", SAIGON, "LAN@saigon.vn", "--name", "Lan", "--role", "agent")
    assert again.returncode == 1 and "already has a user" in again.stderr
    weak = cloudcc("user", "password", SAIGON, "lan@saigon.vn", stdin="short\n")
    assert weak.returncode == 1 and "at least 10" in weak.stderr
    unknown = cloudcc("user", "password", SAIGON, "nobody", stdin="long enough password\n")
    assert unknown.returncode == 1 and "no user" in unknown.stderr
    done = cloudcc("user", "password", SAIGON, "lan@saigon.vn", stdin="mật khẩu của Lan\n")
    assert done.returncode == 0, done.stderr
    assert "mật khẩu của Lan" not in done.stdout + done.stderr
    with signed_in(site, SAIGON, "lan@saigon.vn", "mật khẩu của Lan") as http:
        home = http.get(f"/t/{SAIGON}/?lang=en")
        assert "Hello Lan Lê" in home.text and "Tenant admin" in home.text
        assert "Organisation settings" in home.text
        assert http.get(f"/t/{HANOI}/").status_code == 403

    operator = cloudcc("user", "add", "_", "noc", "--name", "Trực ca", "--role", "operator")
    assert operator.returncode == 0, operator.stderr
    assert cloudcc("user", "password", "_", "noc", stdin="mật khẩu trực ca\n").returncode == 0
    with signed_in(site, "_", "noc", "mật khẩu trực ca") as http:
        home = http.get("/t/_/")
        assert "Xin chào Trực ca" in home.text and "Nhà vận hành" in home.text
        assert http.get(f"/t/{SAIGON}/").status_code == 403


def test_the_api_still_opens_with_a_key_and_no_csrf_token(site: Site) -> None:
    headers = api_headers(site.url, site.nats_url, HANOI)
    with httpx.Client(base_url=site.url, timeout=10, headers=headers) as http:
        created = http.post(f"/api/v1/tenants/{HANOI}/customers", json={"name": "Khách Hà"})
        assert created.status_code == 201, created.text
        assert "set-cookie" not in created.headers  # no session, no CSRF cookie for the API
        assert http.get(f"/api/v1/tenants/{SAIGON}/customers").status_code == 403
    assert httpx.get(f"{site.url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{site.url}/static/app.css", timeout=10).status_code == 200


def test_the_csrf_secret_is_kept_for_its_owner_only(site: Site) -> None:
    secret = site.data / "secret.key"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text().strip()) >= 32
    assert (site.data / "sessions").is_dir()


def test_the_supervisor_board_shows_the_floor_and_pushes_its_changes(site: Site) -> None:
    apps = site.apps
    lan = apps.agents.create_user(
        HANOI, "Lan Phạm", "lan@hanoi.vn", "supervisor", package=Package.CONTACT_CENTER
    )
    apps.agents.set_password(HANOI, lan, "mật khẩu của Lan 2024")
    assert site.an is not None
    apps.agents.add_endpoint(HANOI, site.an, "sip_phone", "an-desk")
    apps.agents.go_available(HANOI, site.an)
    with signed_in(site, HANOI, "lan@hanoi.vn", "mật khẩu của Lan 2024") as http:
        home = http.get(f"/t/{HANOI}/")
        assert f'href="/t/{HANOI}/board"' in home.text  # the board is a real link now
        board = wait_for(
            lambda: http.get(f"/t/{HANOI}/board?lang=en"),
            lambda r: 'data-presence="available"' in r.text,
        )
        assert board.status_code == 200 and "Supervisor board" in board.text
        assert "An Nguyễn" in board.text and "Available" in board.text

        # The live stream: An takes a break, and the change arrives as an event.
        with http.stream("GET", f"/t/{HANOI}/live", timeout=15) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert "hello" in next(line for line in lines if line.startswith("data:"))
            apps.agents.take_break(HANOI, site.an, "Ăn trưa")
            change = next(
                line for line in lines if line.startswith("data:") and "agent_board" in line
            )
            assert str(site.an) in change
        tables = http.get(f"/t/{HANOI}/board/tables")
        assert "Ăn trưa" in tables.text and 'data-presence="break"' in tables.text
        # Another tenant's board: 403, and its stream neither.
        assert http.get(f"/t/{SAIGON}/board").status_code == 403
        assert http.get(f"/t/{SAIGON}/live").status_code == 403

    # An agent of the tenant may not see the board: a 403 that says why.
    with signed_in(site, HANOI, "an@hanoi.vn", AN_PASSWORD) as http:
        refused = http.get(f"/t/{HANOI}/board")
        assert refused.status_code == 403 and "giám sát viên" in refused.text
        assert http.get(f"/t/{HANOI}/live").status_code == 403
    # Without a session: to the sign-in form.
    with site.client() as http:
        assert http.get(f"/t/{HANOI}/board").headers["location"] == "/signin"


TOO_MANY_VI = "Đăng nhập sai quá nhiều lần; vui lòng thử lại sau 1 phút."
TOO_MANY_EN = "Too many attempts; try again in 1 minute."


def test_an_account_is_throttled_after_five_failures_even_with_the_right_password(
    site: Site,
) -> None:
    binh = site.apps.agents.create_user(
        HANOI, "Bình Võ", "binh@hanoi.vn", "agent", package=Package.CONTACT_CENTER
    )
    site.apps.agents.set_password(HANOI, binh, "mật khẩu của Bình 2024")
    wait_until_known(site, HANOI, "binh@hanoi.vn")
    answers = {}
    # A user who exists and a login that does not are treated alike: nothing tells which.
    for login in ("binh@hanoi.vn", "ghost@hanoi.vn"):
        with site.client() as http:
            for _ in range(5):
                assert sign_in(http, HANOI, login, "a wrong guess").status_code == 401
            refused = sign_in(http, HANOI, login.upper(), "mật khẩu của Bình 2024")
            assert refused.status_code == 429 and TOO_MANY_VI in refused.text, refused.text
            assert 0 < int(refused.headers["retry-after"]) <= 60
            assert "cloudcc_session" not in http.cookies
            http.cookies.set("lang", "en")
            english = sign_in(http, HANOI, login, "mật khẩu của Bình 2024")
            assert english.status_code == 429 and TOO_MANY_EN in english.text
            page = re.sub(r'name="_csrf_token" value="[^"]+"', "", english.text)
            answers[login] = page.replace(login, "LOGIN")
    assert answers["binh@hanoi.vn"] == answers["ghost@hanoi.vn"]
    # Another account, from the same address, still signs in.
    with signed_in(site, HANOI, "an@hanoi.vn", AN_PASSWORD) as http:
        assert http.get(f"/t/{HANOI}/").status_code == 200


def test_a_successful_sign_in_clears_the_accounts_failures(site: Site) -> None:
    with signed_in(site, HANOI, "an@hanoi.vn", AN_PASSWORD):
        pass
    with site.client() as http:
        for _ in range(2):
            for _ in range(4):
                assert sign_in(http, HANOI, "an@hanoi.vn", "a wrong guess").status_code == 401
            # Without the clearing, the second round's last attempt would be the ninth.
            assert sign_in(http, HANOI, "an@hanoi.vn", AN_PASSWORD).status_code == 303


@pytest.fixture(scope="module")
def secure_site(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """An instance behind a (pretend) TLS proxy: CLOUDCC_SECURE_COOKIES=1."""
    data = tmp_path_factory.mktemp("signin-secure")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port, CLOUDCC_SECURE_COOKIES="1"):
            url = f"http://127.0.0.1:{port}"
            api_headers(url, nats_url, "signin-secure")
            site = Site(url, apps, data, nats_url)
            user = apps.agents.create_user(
                "signin-secure", "Cúc Đỗ", "cuc@secure.vn", "agent", package=Package.CONTACT_CENTER
            )
            apps.agents.set_password("signin-secure", user, "mật khẩu của Cúc 2024")
            yield site
    finally:
        apps.close()


def cookie_attributes(answer: httpx.Response, name: str) -> set[str]:
    [cookie] = [c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    return {a.strip().lower() for a in cookie.split(";")[1:]}


def post_sign_in(site: Site, tenant: str, login: str, password: str) -> httpx.Response:
    """A sign-in as a browser over https would post it: a Secure cookie is not sent back
    over plain http, so the CSRF cookie is sent by hand."""
    form = httpx.get(f"{site.url}/signin", timeout=10)
    [csrf] = [c for c in form.headers.get_list("set-cookie") if c.startswith("csrftoken=")]
    token = re.search(r'name="_csrf_token" value="([^"]+)"', form.text)
    assert token
    fields = {"organisation": tenant, "login": login, "password": password}
    return httpx.post(
        f"{site.url}/signin",
        data={**fields, "_csrf_token": token.group(1)},
        headers={"cookie": csrf.split(";")[0]},
        timeout=10,
    )


def test_the_cookies_are_secure_when_the_setting_says_so(site: Site, secure_site: Site) -> None:
    plain = httpx.get(f"{site.url}/signin?lang=en", timeout=10)
    assert "secure" not in cookie_attributes(plain, "csrftoken")
    assert "secure" not in cookie_attributes(plain, "lang")

    form = httpx.get(f"{secure_site.url}/signin?lang=en", timeout=10)
    assert "secure" in cookie_attributes(form, "csrftoken")
    assert "secure" in cookie_attributes(form, "lang")
    wait_until_known(secure_site, "signin-secure", "cuc@secure.vn")
    answer = post_sign_in(secure_site, "signin-secure", "cuc@secure.vn", "mật khẩu của Cúc 2024")
    assert answer.status_code == 303, answer.text
    attributes = cookie_attributes(answer, "cloudcc_session")
    assert {"secure", "httponly", "samesite=lax"} <= attributes


def test_an_address_is_throttled_after_thirty_failures(secure_site: Site) -> None:
    # Thirty logins guessed once each (no account reaches its own limit) from 127.0.0.1.
    for n in range(30):
        answer = post_sign_in(secure_site, "signin-secure", f"guess{n}@secure.vn", "guess")
        assert answer.status_code == 401, (n, answer.text)
    refused = post_sign_in(secure_site, "signin-secure", "cuc@secure.vn", "mật khẩu của Cúc 2024")
    assert refused.status_code == 429 and TOO_MANY_VI in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= 60


def test_an_oversized_login_or_password_is_refused_at_once(site: Site) -> None:
    with site.client() as http:
        for login, password in (("x" * 400, "pw"), ("an@hanoi.vn", "p" * 100_000)):
            started = time.monotonic()
            answer = sign_in(http, "hanoi", login, password)
            assert answer.status_code == 400, answer.status_code
            assert time.monotonic() - started < 2  # no scrypt over a 100 kB password
