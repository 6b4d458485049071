"""The live chat's pages (CT8): the widget script, the visitor's WebSocket, a sample site.

- `GET /widget/<tenant>.js` is the one script tag a tenant pastes into its website
  (`<script src="https://HOST/widget/<tenant>.js" async></script>`; `?lang=en` for
  English). It draws a chat button and panel inside a shadow root, so that neither the
  host page's CSS nor the widget's touches the other. A tenant that does not exist, or
  whose chat (CT8) is not enabled, gets a 404 script that does nothing.
- `/chat/<tenant>/ws` is the visitor's WebSocket, speaking the frames of
  connectors.livechat.schemas. The tenant comes from the path and the visitor from their
  signed token: the visitor never names a customer or a conversation, and a token of
  another tenant's widget is not taken. A bad frame is answered with an `error` frame and
  the socket stays open. Against floods (connectors.livechat.inbound.Admission): a socket
  that has not said hello within HELLO_SECONDS is closed (CLOSE_NO_HELLO); one more socket
  than a client address or a tenant may have open, or one more new visitor than a client
  address may start in a minute, gets an `error` frame `too_many` and is closed
  (CLOSE_TRY_LATER). The client address is the ASGI scope's `client`, nothing else.
- `GET /site/<tenant>` is a sample shop page with the widget on it (`/site/demo` for
  `cloudcc up --demo`), for trying the widget and showing the snippet to paste.

No session, cookie or CSRF token is involved: the widget runs on the tenant's site, not
ours, and the token it keeps in the browser is the visitor's only credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, Router, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.response import Template
from litestar.status_codes import HTTP_404_NOT_FOUND

from connectors.livechat.inbound import (
    HELLO_SECONDS,
    Admission,
    InvalidMessage,
    RateLimit,
    fact_of,
    issue_token,
    visitor_of,
)
from connectors.livechat.outbound import Watcher
from connectors.livechat.schemas import (
    MAX_FRAME,
    MAX_TEXT,
    Accepted,
    Error,
    Hello,
    Leave,
    Online,
    Say,
    ServerFrame,
    Welcome,
    decode,
    encode,
)
from connectors.livechat.services import LiveChat, Thread
from domain.conversations import ConversationStatus
from web.pages.auth import page, page_language
from web.pages.i18n import LANGUAGES, MESSAGES
from web.pages.texts.chat import WIDGET_KEYS

log = logging.getLogger(__name__)

WIDGET_JS = Path(__file__).parent.parent / "static" / "widget.js"
CONFIG_MARK = "/*CONFIG*/null"
JAVASCRIPT = "text/javascript; charset=utf-8"
# No chat for this tenant (a close code of our own): the widget takes itself off the page.
CLOSE_NO_CHAT = 4404
# RFC 6455 "try again later": the widget reconnects, as after any other close.
CLOSE_TRY_LATER = 1013
# No hello in HELLO_SECONDS (a close code of our own, after HTTP's 408).
CLOSE_NO_HELLO = 4408
# Frames of any kind a socket may send (messages have their own, lower limit).
FRAME_BURST = 40
FRAMES_PER_SECOND = 10.0


def chat_router(chat: LiveChat) -> Router:
    script = WIDGET_JS.read_text(encoding="utf-8")
    admission = Admission()  # this process's sockets
    if CONFIG_MARK not in script:
        raise RuntimeError(f"{WIDGET_JS} has lost its {CONFIG_MARK} mark")

    @get("/widget/{name:str}", include_in_schema=False, media_type=JAVASCRIPT)
    async def widget(request: Request[Any, Any, Any], name: str) -> Response[str]:
        tenant = name.removesuffix(".js")
        if not name.endswith(".js") or not await chat.runner(chat.chat_open, tenant):
            return Response(
                "/* cloudcc: no live chat here */\n",
                status_code=HTTP_404_NOT_FOUND,
                media_type=JAVASCRIPT,
            )
        lang = request.query_params.get("lang")
        lang = lang if lang in LANGUAGES else "vi"
        config = {
            "tenant": tenant,
            "base": str(request.base_url).rstrip("/"),
            "lang": lang,
            "maxText": MAX_TEXT,
            "texts": {key: MESSAGES[lang][key] for key in WIDGET_KEYS},
        }
        return Response(
            script.replace(CONFIG_MARK, _script_json(config)),
            media_type=JAVASCRIPT,
            headers={"Cache-Control": "public, max-age=300"},
        )

    @get("/site/{tenant_id:str}", include_in_schema=False)
    async def sample_site(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        found = await chat.runner(chat.chat_open, tenant_id)
        lang = page_language(request)
        base = str(request.base_url).rstrip("/")
        suffix = "" if lang == "vi" else f"?lang={lang}"
        src = f"{base}/widget/{tenant_id}.js{suffix}"
        return page(
            request,
            "chat_site.html",
            200 if found else HTTP_404_NOT_FOUND,
            tenant=tenant_id,
            found=found,
            src=src,
            snippet=f'<script src="{src}" async></script>',
        )

    @websocket("/chat/{tenant_id:str}/ws")
    async def chat_socket(socket: WebSocket[Any, Any, Any], tenant_id: str) -> None:
        await socket.accept()
        session = _ChatSocket(socket, chat, tenant_id, admission)
        try:
            await session.run()
        except WebSocketDisconnect:
            pass
        finally:
            await session.close()

    return Router(path="/", route_handlers=[widget, sample_site, chat_socket])


def _script_json(config: dict[str, Any]) -> str:
    """JSON safe inside a script: no `</script>`, no line separators JavaScript rejects."""
    text = msgspec.json.encode(config).decode()
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


class _ChatSocket:
    """One visitor's socket: frames in, facts out; their conversation's lines pushed."""

    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        chat: LiveChat,
        tenant_id: str,
        admission: Admission,
    ) -> None:
        self.socket, self.chat, self.tenant = socket, chat, tenant_id
        self.admission = admission
        # The ASGI scope's client only (see the module's doc).
        client = socket.client
        self.ip = client.host if client is not None and client.host else "unknown"
        self.admitted = False
        self.closed = False  # closed by us: nothing more is read
        self.generation = 0  # of the visitor's newest conversation: where thread() starts
        self.visitor: str | None = None
        self.name = ""
        self.limit = RateLimit()  # messages
        self.frames = RateLimit(FRAME_BURST, 1 / FRAMES_PER_SECOND)  # any frame at all
        self.watcher: Watcher | None = None
        self.sent: set[str] = set()
        self.online: bool | None = None
        self.conversation: dict[str, Any] | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        if not self.admission.enter(self.ip, self.tenant):
            await self.refuse("too many chats open from here; try again later")
            return
        self.admitted = True
        deadline = asyncio.get_running_loop().time() + HELLO_SECONDS
        try:
            await self.chat.hub.start()
        except Exception:  # noqa: BLE001 - NATS not there (yet): the widget comes back later
            log.exception("live chat: the hub did not start")
            await self.send(Error(code="unavailable", message="the chat is not ready; retry"))
            await self.socket.close(code=CLOSE_TRY_LATER, reason="not ready")
            return
        if not await self.chat.runner(self.chat.chat_open, self.tenant):
            await self.send(Error(code="no_chat", message="there is no live chat here"))
            await self.socket.close(code=CLOSE_NO_CHAT, reason="no live chat here")
            return
        while not self.closed:
            if self.visitor is None:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await self.socket.receive()
                except TimeoutError:
                    await self.socket.close(code=CLOSE_NO_HELLO, reason="no hello in time")
                    return
            else:
                event = await self.socket.receive()
            if event["type"] == "websocket.disconnect":
                return
            text, raw = event.get("text"), event.get("bytes")
            data = text if isinstance(text, str) else raw if isinstance(raw, bytes) else b""
            if not self.frames.allow():
                # With the message's id, if it has one: the widget sends it again later.
                slow_down = "too many frames; slow down"
                await self.send(Error(code="rate_limited", message=slow_down, id=_id_in(data)))
                continue
            await self.on_frame(data)

    async def on_frame(self, data: str | bytes) -> None:
        size = len(data.encode() if isinstance(data, str) else data)
        if size > MAX_FRAME:
            await self.send(Error(code="too_big", message=f"a frame is at most {MAX_FRAME} bytes"))
            return
        try:
            frame = decode(data)
        except msgspec.ValidationError as error:
            await self.send(Error(code="invalid", message=str(error), id=_id_in(data)))
            return
        except msgspec.DecodeError as error:
            await self.send(Error(code="malformed", message=f"not a JSON frame: {error}"))
            return
        except RecursionError:  # nested deeper than the decoder goes: not a frame of ours
            await self.send(Error(code="malformed", message="not a JSON frame: nested too deep"))
            return
        if isinstance(frame, Hello):
            await self.hello(frame)
        elif self.visitor is None:
            await self.send(Error(code="hello_first", message="say hello first", id=frame.id))
        else:
            await self.message(frame)

    async def hello(self, frame: Hello) -> None:
        if self.visitor is not None:
            await self.send(Error(code="hello_again", message="hello was said already"))
            return
        token = frame.token
        visitor = visitor_of(self.chat.secret, self.tenant, token)
        if token is None or visitor is None:
            if not self.admission.new_visitor(self.ip):
                await self.refuse("too many new chats from here; try again later")
                return
            token = issue_token(self.chat.secret, self.tenant)
            visitor = visitor_of(self.chat.secret, self.tenant, token)
            assert visitor is not None
        try:
            thread = await self.chat.runner(self.chat.thread, self.tenant, visitor)
            online = await self.chat.runner(self.chat.online, self.tenant)
        except Exception:  # noqa: BLE001 - the store is unreachable: hello may come again
            log.exception("live chat: reading %s's conversation failed", visitor)
            await self.send(Error(code="unavailable", message="the chat is not ready; retry"))
            return
        self.visitor, self.name, self.online = visitor, frame.name.strip(), online
        self.watcher = Watcher(self.tenant)
        self._follow(thread)
        self.sent.update(line.id for line in thread.lines)
        self.chat.hub.add(self.watcher)
        await self.send(Welcome(token=token, online=online, messages=thread.lines))
        self._pusher = asyncio.get_running_loop().create_task(self._push())
        # A change that came between reading the thread and joining the hub is not lost.
        self.watcher.wake(conversation=True, presence=True)

    async def message(self, frame: Say | Leave) -> None:
        assert self.visitor is not None
        if not self.limit.allow():
            await self.send(
                Error(code="rate_limited", message="too many messages; wait a moment", id=frame.id)
            )
            return
        try:
            fact = fact_of(self.tenant, self.visitor, frame, self.name)
        except InvalidMessage as error:
            await self.send(Error(code=error.code, message=str(error), id=frame.id))
            return
        if frame.name.strip():
            self.name = frame.name.strip()
        try:
            await self.chat.publish(fact)
        except Exception as error:  # noqa: BLE001 - NATS down: the widget sends it again
            log.warning("live chat: a message of %s not published: %r", self.visitor, error)
            await self.send(
                Error(code="unavailable", message="not sent; trying again", id=frame.id)
            )
            return
        await self.send(Accepted(id=frame.id))
        if _unqueued(self.conversation):
            self.chat.settle(self.tenant, self.visitor)

    async def _push(self) -> None:
        """Each time the hub wakes this socket: what the visitor has not seen yet."""
        watcher, visitor = self.watcher, self.visitor
        assert watcher is not None and visitor is not None
        while True:
            await watcher.woken.wait()
            conversation, presence = watcher.changes()
            try:
                thread = (
                    await self.chat.runner(self.chat.thread, self.tenant, visitor, self.generation)
                    if conversation
                    else None
                )
                online = await self.chat.runner(self.chat.online, self.tenant) if presence else None
            except Exception:  # noqa: BLE001 - the next change, or a reconnect, catches up
                log.exception("live chat: reading %s's conversation failed", visitor)
                continue
            if thread is not None:
                self._follow(thread)
                for line in thread.lines:
                    if line.id not in self.sent:
                        self.sent.add(line.id)
                        await self.send(line)
            if online is not None and online != self.online:
                self.online = online
                await self.send(Online(online=online))

    def _follow(self, thread: Thread) -> None:
        assert self.watcher is not None
        self.conversation = thread.conversation
        self.generation = thread.generation
        self.watcher.conversations = set(thread.watch)

    async def send(self, frame: ServerFrame) -> None:
        async with self._send_lock:
            await self.socket.send_text(encode(frame))

    async def refuse(self, message: str) -> None:
        """Too many: the `too_many` error frame, then closed; the widget comes back later."""
        await self.send(Error(code="too_many", message=message))
        await self.socket.close(code=CLOSE_TRY_LATER, reason="too many")
        self.closed = True

    async def close(self) -> None:
        if self.admitted:
            self.admitted = False
            self.admission.leave(self.ip, self.tenant)
        if self.watcher is not None:
            self.chat.hub.remove(self.watcher)
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pusher


def _unqueued(conversation: dict[str, Any] | None) -> bool:
    """Whether the visitor's conversation may still be waiting for the chat queue: not
    started yet as far as the socket knows, or open in no queue and with nobody."""
    return conversation is None or (
        conversation["queue_id"] is None
        and conversation["assignee"] is None
        and conversation["status"] == ConversationStatus.OPEN
    )


def _id_in(data: str | bytes) -> str | None:
    """The message id of a frame that failed validation, if it has a usable one, so that
    the widget knows which of its messages was refused."""
    if len(data) > MAX_FRAME:
        return None
    try:
        raw = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and len(value) <= 64 else None
