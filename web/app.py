"""The Litestar application: the front door of cloudcc.

`create_app` is called by the runtime once NATS is connected. Other modules add their
pages and APIs by passing route handlers (functions, controllers or routers) in
`extra_route_handlers`; the runtime collects them with `Runtime.add_route_handlers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import ControllerRouterHandler

from web.api.auth import COMPONENTS
from web.health import RuntimeView, health_report


def create_app(
    runtime: RuntimeView, extra_route_handlers: Sequence[ControllerRouterHandler] = ()
) -> Litestar:
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

    return Litestar(
        route_handlers=[health, index, *extra_route_handlers],
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
