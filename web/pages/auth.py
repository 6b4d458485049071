"""Signing in to the web pages (OP4): the form, the session, and the door of every tenant's
pages.

- Sessions are server-side (a file per session under `<data>/sessions`): the cookie
  `cloudcc_session` holds a random id and nothing else, so signing out or a deactivation
  really ends a session. It is HttpOnly and SameSite=Lax; `secure` is off because cloudcc
  serves plain HTTP itself (TLS, when there is some, ends at a proxy in front).
- A successful sign-in starts a new session id (no session fixation); the session keeps the
  user's id, tenant and role, and every request reloads the user from the access read
  model, so a deactivated user is signed out on their next request.
- Every form carries a CSRF token (Litestar's CSRF middleware, its secret kept in
  `<data>/secret.key`); the API, which takes bearer keys and no cookies, is exempt.
- `/t/<tenant>/...` is one tenant's: no session → the sign-in form; another tenant's
  session → 403 with a page that says so.
- Failed sign-ins are not rate-limited yet; scrypt makes each guess cost ~0.1 s of CPU,
  which slows a guesser but is no lockout (a later step).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.params import Body
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_401_UNAUTHORIZED, HTTP_403_FORBIDDEN
from litestar.stores.file import FileStore
from litestar.types import Empty, Message, ScopeSession

from projections.access import AccessReadModel, Principal
from web.pages.i18n import DEFAULT_LANGUAGE, language, translator

ExceptionHandler = Callable[[Request[Any, Any, Any], Any], Response[Any]]

SESSION_COOKIE = "cloudcc_session"
SESSION_STORE = "sessions"
LANG_COOKIE = "lang"
SECRET_FILE = "secret.key"
# Eight working hours and then some; a session is renewed on each request it is used.
SESSION_MAX_AGE = 12 * 3600
# What carries cookies is the pages; the API takes bearer keys and `/health` is probed.
NOT_PAGES = ["^/api/", "^/health$"]
# The state key under which sign-in asks for a new session id.
_FRESH_SESSION = "cloudcc_fresh_session_id"

# The pages of ROLE_LINKS that exist so far (the others say "coming soon").
READY_PAGES = frozenset({"board", "overview", "inbox", "customers", "tickets"})
# Which pages each role has: the links of the landing page and of every page's bar.
ROLE_LINKS: dict[str, list[str]] = {
    "agent": ["inbox", "customers", "tickets"],
    "supervisor": ["board", "overview", "inbox", "customers", "tickets"],
    "tenant_admin": ["settings", "board", "overview", "customers", "tickets"],
    "operator": ["tenants"],
}


class _SessionBackend(ServerSideSessionBackend):
    """Litestar's server-side sessions, with two changes:

    - a new id when sign-in asks for one: an id planted in a browser before sign-in must
      not become a signed-in session (session fixation);
    - nothing stored for someone not signed in: Litestar would write a file and set a
      cookie for every visit to the sign-in form, which fills the disk for anyone who asks.
    """

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        fresh = connection.scope["state"].get(_FRESH_SESSION)
        return str(fresh) if fresh else super().get_session_id(connection)

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: Message,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        if scope_session is Empty or not scope_session:
            if connection.cookies.get(self.config.key, "null") == "null":
                return
            scope_session = Empty  # an emptied session: its file and cookie go
        await super().store_in_message(scope_session, message, connection)


class _SessionConfig(ServerSideSessionConfig):
    _backend_class = _SessionBackend


def session_config() -> ServerSideSessionConfig:
    return _SessionConfig(
        key=SESSION_COOKIE,
        store=SESSION_STORE,
        max_age=SESSION_MAX_AGE,
        renew_on_access=True,
        httponly=True,
        samesite="lax",
        secure=False,
        exclude=NOT_PAGES,
    )


def session_store(data_dir: Path) -> FileStore:
    return FileStore(data_dir / "sessions", create_directories=True)


def csrf_config(data_dir: Path) -> CSRFConfig:
    return CSRFConfig(secret=instance_secret(data_dir), exclude=NOT_PAGES)


def instance_secret(data_dir: Path) -> str:
    """The instance's secret (CSRF tokens are signed with it), made once and kept, so that
    a restart does not invalidate the forms people have open. Readable by its owner only."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


class SignInForm(msgspec.Struct, kw_only=True):
    """What the sign-in form posts; missing fields are empty, and fail like wrong ones."""

    organisation: str = ""
    login: str = ""
    password: str = ""


class SignInRequired(Exception):
    """No session, or one whose user may no longer sign in."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 401


class OtherOrganisation(Exception):
    """A signed-in user asked for another tenant's page."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 403

    def __init__(self, principal: Principal) -> None:
        super().__init__(f"{principal.login} belongs to {principal.tenant_id}")
        self.principal = principal


def page_language(request: Request[Any, Any, Any]) -> str:
    """`?lang=` if given, else the `lang` cookie, else Vietnamese."""
    return (
        language(request.query_params.get("lang"))
        or language(request.cookies.get(LANG_COOKIE))
        or DEFAULT_LANGUAGE
    )


def page(
    request: Request[Any, Any, Any], name: str, status_code: int = 200, **context: Any
) -> Template:
    """A template in the request's language; `?lang=` is remembered in a cookie."""
    lang = page_language(request)
    cookies = []
    if language(request.query_params.get("lang")):
        cookies.append(
            Cookie(key=LANG_COOKIE, value=lang, max_age=365 * 86400, samesite="lax", path="/")
        )
    # The bar's links and the phone panel are drawn for whoever the guard let through.
    me: Principal | None = request.state.get(_PRINCIPAL)
    nav = [link for link in ROLE_LINKS.get(me.role, []) if link in READY_PAGES] if me else []
    return Template(
        template_name=name,
        context={"lang": lang, "t": translator(lang), "me": me, "nav": nav, **context},
        status_code=status_code,
        cookies=cookies,
    )


def home_url(tenant_id: str) -> str:
    return f"/t/{quote(tenant_id, safe='')}/"


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """The signed-in user the guard let through."""
    principal: Principal = request.state[_PRINCIPAL]
    return principal


_PRINCIPAL = "principal"


def signed_in_guard(access: AccessReadModel) -> Any:
    """Lets through a request whose session's user is active and of the path's tenant."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        raw = connection.scope.get("session")
        session: dict[str, Any] = raw if isinstance(raw, dict) else {}
        user_id = session.get("user_id")
        principal = access.user(user_id) if isinstance(user_id, str) else None
        if principal is None or principal.tenant_id != session.get("tenant_id"):
            if session:
                connection.clear_session()  # deactivated, or gone: the session ends here
            raise SignInRequired
        if principal.tenant_id != connection.path_params.get("tenant_id"):
            raise OtherOrganisation(principal)
        connection.state[_PRINCIPAL] = principal

    return guard


def pages_router(access: AccessReadModel) -> Router:
    """The sign-in pages and each tenant's landing page, reading users from `access`."""

    @get("/", include_in_schema=False)
    async def root() -> Redirect:
        return Redirect("/signin", status_code=303)

    @get("/signin", include_in_schema=False)
    async def signin_form(request: Request[Any, Any, Any]) -> Template:
        return page(request, "signin.html", organisation="", login="", failed=False)

    @post("/signin", include_in_schema=False)
    async def signin(
        request: Request[Any, Any, Any],
        data: Annotated[SignInForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        organisation, login = data.organisation.strip(), data.login.strip()
        # scrypt takes a tenth of a second of CPU: off the event loop.
        principal = await anyio.to_thread.run_sync(
            access.sign_in, organisation, login, data.password
        )
        if principal is None:
            return page(
                request,
                "signin.html",
                HTTP_401_UNAUTHORIZED,
                organisation=organisation,
                login=login,
                failed=True,
            )
        old = request.cookies.get(SESSION_COOKIE)
        if old and old != "null":
            await request.app.stores.get(SESSION_STORE).delete(old)
        request.scope["state"][_FRESH_SESSION] = secrets.token_hex(32)
        request.set_session(
            {"user_id": principal.user_id, "tenant_id": principal.tenant_id, "role": principal.role}
        )
        return Redirect(home_url(principal.tenant_id), status_code=303)

    @post("/signout", include_in_schema=False)
    async def signout(request: Request[Any, Any, Any]) -> Redirect:
        request.clear_session()
        return Redirect("/signin", status_code=303)

    @get("/t/{tenant_id:str}/", include_in_schema=False, guards=[signed_in_guard(access)])
    async def home(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        principal = principal_of(request)
        links = ROLE_LINKS.get(principal.role, [])
        return page(request, "home.html", principal=principal, links=links, ready=READY_PAGES)

    return Router(
        path="/",
        route_handlers=[root, signin_form, signin, signout, home],
        exception_handlers=dict(PAGE_EXCEPTION_HANDLERS),
    )


def _to_signin(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return Redirect("/signin", status_code=303)


def _forbidden(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, OtherOrganisation)
    home = home_url(exc.principal.tenant_id)
    return page(request, "forbidden.html", HTTP_403_FORBIDDEN, home=home)


# What every router of signed-in pages answers when its guard says no.
PAGE_EXCEPTION_HANDLERS: dict[int | type[Exception], ExceptionHandler] = {
    SignInRequired: _to_signin,
    OtherOrganisation: _forbidden,
}
