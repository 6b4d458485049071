"""Signing in to the web pages (OP4): the form, the session, and the door of every tenant's
pages.

- Sessions are server-side (a file per session under `<data>/sessions`): the cookie
  `cloudcc_session` holds a random id and nothing else, so signing out or a deactivation
  really ends a session. It is HttpOnly and SameSite=Lax.
- Secure cookies: cloudcc serves plain HTTP itself, so by default its cookies (session,
  CSRF, language) are not marked Secure — the embedded set-up at http://127.0.0.1 would
  never get them back. Behind a TLS proxy set `CLOUDCC_SECURE_COOKIES=1`
  (deploy.settings): all three are then Secure, sent by browsers over HTTPS only.
- A successful sign-in starts a new session id (no session fixation); the session keeps the
  user's id, tenant and role, and every request reloads the user from the access read
  model, so a deactivated user is signed out on their next request.
- Every form carries a CSRF token (Litestar's CSRF middleware, its secret kept in
  `<data>/secret.key`); the API, which takes bearer keys and no cookies, is exempt.
- `/t/<tenant>/...` is one tenant's: no session → the sign-in form; another tenant's
  session → 403 with a page that says so.
- Sign-in is throttled (`SignInThrottle`), per account and per client address:
  - an account — (organisation, login), whether or not such a user exists, so the
    answer says nothing about that — is refused for 1 minute after 5 failures within
    15 minutes, then for 2, 4, 8 and at most 15 minutes after each further failure, until
    it has been quiet for 15 minutes after its last refusal ended; while refused, even
    the right password is refused (HTTP 429, Retry-After, "try again in N minutes").
    A successful sign-in clears the account's record;
  - an address — the ASGI scope's `client`, never a forwarded-for header, which anyone
    can write — likewise after 30 failures within 15 minutes (its successes do not
    count). Behind a proxy every client has the proxy's address, so this limit is shared
    by everyone who signs in through it;
  - an attempt counts as a failure from the moment it starts until its password is found
    right, so parallel guesses cannot slip through before the first ones are scored.
  The record is in memory, per process: it is lost on restart, and a cluster of N web
  processes behind a load balancer lets a guesser N times the allowance. It is bounded:
  a key is forgotten 15 minutes after its last failure or refusal, and at most 10 000
  accounts and 10 000 addresses are kept (when full, the least recently used is dropped).
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
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
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_429_TOO_MANY_REQUESTS,
)
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
# The app's state key that says whether cookies are Secure (web.app sets it).
SECURE_COOKIES = "cloudcc_secure_cookies"

# Sign-in throttling (see the docstring above): failures count for THROTTLE_WINDOW
# seconds; ACCOUNT_FAILURES of them refuse an account, ADDRESS_FAILURES an address, first
# for FIRST_REFUSAL seconds, doubling with each further failure up to LONGEST_REFUSAL.
THROTTLE_WINDOW = 15 * 60
ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 30
FIRST_REFUSAL = 60
LONGEST_REFUSAL = 15 * 60
THROTTLE_MAX_KEYS = 10_000
# Longer organisations or logins, or passwords, are no account's: refused before anything.
MAX_NAME = 320
MAX_PASSWORD = 1024

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


def session_config(secure: bool = False) -> ServerSideSessionConfig:
    """The session cookie's settings; `secure` (CLOUDCC_SECURE_COOKIES) marks it Secure."""
    return _SessionConfig(
        key=SESSION_COOKIE,
        store=SESSION_STORE,
        max_age=SESSION_MAX_AGE,
        renew_on_access=True,
        httponly=True,
        samesite="lax",
        secure=secure,
        exclude=NOT_PAGES,
    )


def session_store(data_dir: Path) -> FileStore:
    return FileStore(data_dir / "sessions", create_directories=True)


def csrf_config(data_dir: Path, secure: bool = False) -> CSRFConfig:
    """The CSRF check; `secure` (CLOUDCC_SECURE_COOKIES) marks its cookie Secure."""
    return CSRFConfig(secret=instance_secret(data_dir), exclude=NOT_PAGES, cookie_secure=secure)


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


@dataclass
class _Record:
    """What a throttle knows of one key."""

    failures: deque[float] = field(default_factory=deque)  # times, within the window
    pending: int = 0  # attempts begun and not yet ended
    level: int = 0  # refusals so far: the next lasts `first * 2**level` seconds
    refused_until: float = 0.0
    last: float = 0.0  # the last failure, or the end of the last refusal if later

    def idle(self) -> bool:
        return not (self.failures or self.pending or self.level)


class Throttle:
    """Failures per key, in this process's memory (a cluster of N processes allows N times
    as many). After `limit` failures within `window` seconds a key is refused for `first`
    seconds; from then on each failure refuses it again for twice as long as the last time
    (at most `longest`), until it has had no failure for `window` seconds after its last
    refusal ended. An attempt is counted from `begin` (it is pending) to `end`: pending
    attempts use up the allowance as failures would, so parallel guesses cannot slip in
    before the first ones are scored. A success forgets the key if `forget_on_success`,
    else it only stops being pending.

    Bounded: a key is dropped once nothing about it matters any more (`window` seconds
    after its last failure or refusal), and at most `max_keys` keys are kept, the least
    recently used one being dropped to make room for a new one.
    """

    def __init__(
        self,
        limit: int,
        *,
        window: float = THROTTLE_WINDOW,
        first: float = FIRST_REFUSAL,
        longest: float = LONGEST_REFUSAL,
        max_keys: int = THROTTLE_MAX_KEYS,
        forget_on_success: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.first, self.longest = limit, window, first, longest
        self.max_keys, self.forget_on_success, self._clock = max_keys, forget_on_success, clock
        self._records: OrderedDict[Hashable, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def wait(self, key: Hashable) -> float:
        """0 if an attempt for `key` may begin now, else the seconds it must wait."""
        now = self._clock()
        self._expire(now)
        record = self._records.get(key)
        if record is None:
            return 0.0
        self._refresh(record, now)
        if record.refused_until > now:
            return record.refused_until - now
        # Once refused, one attempt at a time; before, what is left of the allowance.
        allowance = 1 if record.level else self.limit - len(record.failures)
        if record.pending >= allowance:
            return float(self.first)  # attempts in flight may use up the allowance
        return 0.0

    def begin(self, key: Hashable) -> None:
        """An attempt for `key` starts (after `wait` said 0); it must be `end`-ed."""
        now = self._clock()
        self._expire(now)
        record = self._records.get(key)
        if record is None:
            if len(self._records) >= self.max_keys:
                # The least recently used key goes, but not one refused now while another
                # can go: filling the table must not lift a lockout.
                victim = next(
                    (
                        k
                        for k, r in self._records.items()
                        if r.refused_until <= now and not r.pending
                    ),
                    next(iter(self._records)),
                )
                del self._records[victim]
            record = self._records[key] = _Record(last=now)
        self._records.move_to_end(key)
        record.pending += 1

    def end(self, key: Hashable, ok: bool) -> None:
        """The attempt for `key` succeeded (`ok`) or failed."""
        now = self._clock()
        record = self._records.get(key)
        if record is None:  # dropped while in flight, the table being full
            if ok:
                return
            self.begin(key)
            record = self._records[key]
        record.pending = max(0, record.pending - 1)
        if ok:
            if self.forget_on_success:
                record.failures.clear()
                record.level, record.refused_until = 0, 0.0
        else:
            self._refresh(record, now)
            record.failures.append(now)
            record.last = max(record.last, now)
            if record.level or len(record.failures) >= self.limit:
                refusal = min(self.first * 2 ** min(record.level, 32), self.longest)
                record.refused_until = now + refusal
                record.last = record.refused_until
                record.level += 1
                record.failures.clear()
        if record.idle():
            del self._records[key]

    def _refresh(self, record: _Record, now: float) -> None:
        """Forget what is older than the window."""
        while record.failures and record.failures[0] <= now - self.window:
            record.failures.popleft()
        if record.level and record.last <= now - self.window:
            record.level = 0  # quiet for a window after the last refusal: forgiven

    def _expire(self, now: float) -> None:
        """Drop the least recently used keys that no longer matter."""
        while self._records:
            key, record = next(iter(self._records.items()))
            if record.pending or record.last > now - self.window:
                return
            del self._records[key]


class SignInThrottle:
    """The two throttles of sign-in: per account (organisation, login) and per address."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.accounts = Throttle(ACCOUNT_FAILURES, clock=clock)
        self.addresses = Throttle(ADDRESS_FAILURES, forget_on_success=False, clock=clock)

    def begin(self, account: Hashable, address: Hashable) -> float:
        """0 if the attempt may go ahead (then `end` it), else the seconds to wait."""
        wait = max(self.accounts.wait(account), self.addresses.wait(address))
        if wait > 0:
            return wait
        self.accounts.begin(account)
        self.addresses.begin(address)
        return 0.0

    def end(self, account: Hashable, address: Hashable, ok: bool) -> None:
        self.accounts.end(account, ok)
        self.addresses.end(address, ok)


def account_key(organisation: str, login: str) -> tuple[str, str]:
    """The account a sign-in is for, as the access read model matches it (login in lower
    case), whether or not it exists."""
    return organisation.strip(), login.strip().lower()


def client_address(request: Request[Any, Any, Any]) -> str:
    """The address the connection comes from (the ASGI scope's `client`), and nothing a
    client can write itself, like X-Forwarded-For."""
    client = request.scope.get("client")
    return str(client[0]) if client else ""


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
            Cookie(
                key=LANG_COOKIE,
                value=lang,
                max_age=365 * 86400,
                samesite="lax",
                path="/",
                secure=bool(request.app.state.get(SECURE_COOKIES, False)),
            )
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


def pages_router(access: AccessReadModel, throttle: SignInThrottle | None = None) -> Router:
    """The sign-in pages and each tenant's landing page, reading users from `access`;
    sign-in throttled by `throttle` (by default one of its own, for this process)."""
    throttle = throttle or SignInThrottle()

    @get("/", include_in_schema=False)
    async def root() -> Redirect:
        return Redirect("/signin", status_code=303)

    @get("/signin", include_in_schema=False)
    async def signin_form(request: Request[Any, Any, Any]) -> Template:
        return page(request, "signin.html", organisation="", login="", failed=False, wait_minutes=0)

    @post("/signin", include_in_schema=False)
    async def signin(
        request: Request[Any, Any, Any],
        data: Annotated[SignInForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        organisation, login = data.organisation.strip(), data.login.strip()
        if max(len(organisation), len(login)) > MAX_NAME or len(data.password) > MAX_PASSWORD:
            # No such account can exist: refused at once, before scrypt (whose cost grows
            # with the password) and before the throttle keeps a key of that size.
            return page(
                request,
                "signin.html",
                HTTP_400_BAD_REQUEST,
                organisation="",
                login="",
                failed=True,
                wait_minutes=0,
            )
        account, address = account_key(organisation, login), client_address(request)
        wait = throttle.begin(account, address)
        if wait > 0:
            refused = page(
                request,
                "signin.html",
                HTTP_429_TOO_MANY_REQUESTS,
                organisation=organisation,
                login=login,
                failed=False,
                wait_minutes=max(1, math.ceil(wait / 60)),
            )
            refused.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return refused
        principal = None
        try:
            # scrypt takes a tenth of a second of CPU: off the event loop.
            principal = await anyio.to_thread.run_sync(
                access.sign_in, organisation, login, data.password
            )
        finally:
            throttle.end(account, address, ok=principal is not None)
        if principal is None:
            return page(
                request,
                "signin.html",
                HTTP_401_UNAUTHORIZED,
                organisation=organisation,
                login=login,
                failed=True,
                wait_minutes=0,
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
