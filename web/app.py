"""The Litestar application: the front door of cloudcc.

`create_app` is called by the runtime once NATS is connected. Other modules add their
pages and APIs by passing route handlers (functions, controllers or routers) in
`extra_route_handlers`; the runtime collects them with `Runtime.add_route_handlers`.

With a data directory, the app also keeps sessions and checks CSRF tokens for the pages
people sign in to (web.pages.auth); the templates and `/static` are always there.
`secure_cookies` (the setting CLOUDCC_SECURE_COOKIES, taken from the runtime's settings
unless given) marks the session, CSRF and language cookies Secure.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from litestar import Litestar, MediaType, Response, Router, get
from litestar.datastructures import State
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler

from web.api.auth import COMPONENTS
from web.health import RuntimeView, health_report
from web.pages.auth import (
    SECURE_COOKIES,
    SESSION_STORE,
    csrf_config,
    session_config,
    session_store,
)

WEB_DIR = Path(__file__).parent


def create_app(
    runtime: RuntimeView,
    extra_route_handlers: Sequence[ControllerRouterHandler] = (),
    *,
    data_dir: Path | None = None,
    secure_cookies: bool | None = None,
) -> Litestar:
    if secure_cookies is None:
        # deploy.runtime.Runtime carries its deploy.settings.Settings.
        secure_cookies = bool(getattr(getattr(runtime, "settings", None), "secure_cookies", False))

    @get("/health", media_type=MediaType.JSON)
    async def health() -> Response[dict[str, Any]]:
        report = health_report(runtime)
        # 503 lets a load balancer or orchestrator take a degraded instance out of rotation.
        code = HTTP_200_OK if report["status"] == "ok" else HTTP_503_SERVICE_UNAVAILABLE
        return Response(report, status_code=code)

    @get("/", media_type=MediaType.HTML)
    async def index() -> str:
        url = escape(runtime.nats_public_url)
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>cloudcc</title></head>"
            f"<body><h1>cloudcc is running</h1><p>Event store: NATS at {url}.</p>"
            "<p><a href='/health'>Health</a></p></body></html>"
        )

    # The sign-in pages take "/" when this process serves them (deploy.services).
    own_index = [] if any("/" in _paths(h) for h in extra_route_handlers) else [index]
    web: dict[str, Any] = {}
    if data_dir is not None:
        web = {
            "middleware": [session_config(secure_cookies).middleware],
            "stores": {SESSION_STORE: session_store(data_dir)},
            "csrf_config": csrf_config(data_dir, secure_cookies),
        }
    templates = Environment(loader=FileSystemLoader(WEB_DIR / "templates"), autoescape=True)
    return Litestar(
        route_handlers=[
            health,
            *own_index,
            create_static_files_router("/static", [WEB_DIR / "static"], include_in_schema=False),
            *extra_route_handlers,
        ],
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(templates)),
        state=State({SECURE_COOKIES: secure_cookies}),
        **web,
        # The API's document at Litestar's default path, /schema (/schema/openapi.json).
        openapi_config=OpenAPIConfig(
            title="cloudcc API", version="1", components=COMPONENTS, use_handler_docstrings=True
        ),
        # The process (cloudcc up, a worker) configures logging, not the web app; but a
        # failing request must be logged with its traceback outside debug mode too.
        logging_config=LoggingConfig(
            configure_root_logger=False,
            log_exceptions="always",
            # A client's mistake is answered with a 4xx and a reason; a traceback in the
            # log is kept for what really failed.
            disable_stack_trace={400, 401, 403, 404, 405, 409, 413, 415, 422, 429},
        ),
    )


def _paths(handler: ControllerRouterHandler) -> set[str]:
    if isinstance(handler, Router):
        return {route.path for route in handler.routes}
    return set(getattr(handler, "paths", ()))
