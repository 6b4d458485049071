"""A stand-in FreeSWITCH for tests: real Event Socket framing over TCP, a small channel model.

FreeSWITCH cannot run here, so `EslPeer` plays its part as `mod_event_socket` in inbound
mode would: `auth/request` on connect, `command/reply` / `api/response` in command order,
`bgapi` answered at once and completed by a BACKGROUND_JOB event, events as
`text/event-json` or URL-encoded `text/event-plain` with the headers FreeSWITCH puts on
channel events. Channels live in the peer, not in a connection: `drop_connections()` cuts
every client mid-call, the calls go on, and what happens meanwhile is never delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Self
from urllib.parse import quote

CHANNEL_NOT_FOUND = "-ERR No such channel!\n"


@dataclass
class PeerChannel:
    uuid: str
    direction: str
    cid_num: str
    dest: str
    variables: dict[str, str] = field(default_factory=dict)
    answered: bool = False
    held: bool = False
    bridged_to: str | None = None
    muted: bool = False
    recording_since: dict[str, float] = field(default_factory=dict)
    eavesdrop_target: str | None = None
    dtmf_sent: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    hangup_cause: str = ""

    @property
    def callstate(self) -> str:
        if self.held:
            return "HELD"
        return "ACTIVE" if self.answered else "RINGING"


@dataclass
class _Conn:
    writer: asyncio.StreamWriter
    authed: bool = False
    format: str = "json"
    events: set[str] = field(default_factory=set)


class EslPeer:
    def __init__(
        self,
        password: str = "ClueCon",
        *,
        answer_delay: float | None = 0.02,
        ring_timeout: float = 30.0,
        collected_digits: str = "1234",
    ) -> None:
        self.password = password
        self.answer_delay = answer_delay  # None: outbound legs ring until killed
        self.ring_timeout = ring_timeout
        self.collected_digits = collected_digits
        self.host = "127.0.0.1"
        self.port = 0
        self.core_uuid = str(uuid.uuid4())
        self.channels: dict[str, PeerChannel] = {}
        self.commands: list[str] = []  # every command received, as sent (header lines too)
        self.emitted: list[dict[str, str]] = []  # every event generated, delivered or not
        self.unregistered: set[str] = set()  # user/<x> dials that fail like FreeSWITCH's
        self.connections_served = 0
        self.snapshot_delay = 0.0  # seconds between taking `show channels` and answering
        self.stalled = False  # True: `api` commands get no reply at all
        self.background_delay = 0.0  # seconds before a `bgapi` command runs
        self._conns: list[_Conn] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seq = 0

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _later(self, delay: float, fn: Any, *args: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            fn(*args)

        self._spawn(run())

    # ------------------------------------------------------------ test controls
    def drop_connections(self) -> None:
        """Cut every client socket abruptly; channels stay up."""
        for conn in self._conns:
            conn.writer.transport.abort()
        self._conns.clear()

    def send_raw(self, data: bytes) -> None:
        for conn in self._conns:
            if conn.authed:
                conn.writer.write(data)

    @property
    def connected_clients(self) -> int:
        return sum(1 for c in self._conns if c.authed and c.events)

    def inject_inbound(
        self, caller: str, destination: str, variables: dict[str, str] | None = None
    ) -> str:
        """A caller reaches the switch (the dialplan parks it, with its variables set)."""
        ch = PeerChannel(str(uuid.uuid4()), "inbound", caller, destination, dict(variables or {}))
        self.channels[ch.uuid] = ch
        self._emit("CHANNEL_CREATE", ch)
        return ch.uuid

    def inject_dtmf(self, channel_id: str, digit: str) -> None:
        ch = self.channels[channel_id]
        self._emit("DTMF", ch, {"DTMF-Digit": digit, "DTMF-Duration": "2000"})

    def answer(self, channel_id: str) -> None:
        ch = self.channels.get(channel_id)
        if ch is None or ch.answered:
            return
        ch.answered = True
        self._emit("CHANNEL_ANSWER", ch)
        ch.done.set()

    def hangup(self, channel_id: str, cause: str = "NORMAL_CLEARING") -> None:
        ch = self.channels.pop(channel_id, None)
        if ch is None:
            return
        partner = self.channels.get(ch.bridged_to) if ch.bridged_to else None
        if partner is not None:
            self._unbridge(ch, partner)
        ch.hangup_cause = cause
        self._emit("CHANNEL_HANGUP_COMPLETE", ch, {"Hangup-Cause": cause})
        ch.done.set()
        if partner is not None and partner.variables.get("park_after_bridge") != "true":
            self.hangup(partner.uuid, cause)

    # ------------------------------------------------------------ events
    def _headers(self, name: str, ch: PeerChannel | None) -> dict[str, str]:
        self._seq += 1
        now = time.time()
        h = {
            "Event-Name": name,
            "Core-UUID": self.core_uuid,
            "FreeSWITCH-Hostname": "eslpeer",
            "FreeSWITCH-Switchname": "eslpeer",
            "FreeSWITCH-IPv4": "127.0.0.1",
            "Event-Date-Local": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
            "Event-Date-GMT": formatdate(now, usegmt=True),
            "Event-Date-Timestamp": str(int(now * 1_000_000)),
            "Event-Calling-File": "switch_channel.c",
            "Event-Calling-Function": "switch_channel_perform_set_running_state",
            "Event-Calling-Line-Number": "2000",
            "Event-Sequence": str(self._seq),
            "Event-UUID": str(uuid.uuid4()),
        }
        if ch is not None:
            h.update(self._channel_headers(ch))
        return h

    def _channel_headers(self, ch: PeerChannel) -> dict[str, str]:
        h = {
            "Channel-State": "CS_EXECUTE" if ch.answered else "CS_ROUTING",
            "Channel-Call-State": ch.callstate,
            "Channel-Name": f"sofia/internal/{ch.dest}@127.0.0.1",
            "Unique-ID": ch.uuid,
            "Call-Direction": ch.direction,
            "Presence-Call-Direction": ch.direction,
            "Answer-State": "answered" if ch.answered else "ringing",
            "Caller-Direction": ch.direction,
            "Caller-Username": ch.cid_num,
            "Caller-Caller-ID-Name": ch.cid_num,
            "Caller-Caller-ID-Number": ch.cid_num,
            "Caller-Destination-Number": ch.dest,
            "Caller-Unique-ID": ch.uuid,
            "Caller-Context": "default",
            "variable_uuid": ch.uuid,
            "variable_direction": ch.direction,
        }
        if ch.bridged_to:
            h["Other-Leg-Unique-ID"] = ch.bridged_to
            h["variable_bridge_to"] = ch.bridged_to
        for key, value in ch.variables.items():
            h[f"variable_{key}"] = value
        return h

    def _emit(self, name: str, ch: PeerChannel | None, extra: dict[str, str] | None = None) -> None:
        h = self._headers(name, ch)
        h.update(extra or {})
        self.emitted.append(h)
        for conn in self._conns:
            if conn.authed and (name in conn.events or "ALL" in conn.events):
                conn.writer.write(_event_frame(h, conn.format))

    # ------------------------------------------------------------ connection
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self._conns.append(conn)
        self.connections_served += 1
        writer.write(b"Content-Type: auth/request\n\n")
        try:
            while True:
                lines = await _read_command(reader)
                if lines is None:
                    return
                self.commands.append("\n".join(lines))
                if not conn.authed:
                    if lines[0] == f"auth {self.password}":
                        conn.authed = True
                        writer.write(_reply("+OK accepted"))
                        continue
                    writer.write(_reply("-ERR invalid"))
                    writer.write(_disconnect_notice())
                    await writer.drain()
                    writer.close()
                    return
                await self._command(conn, lines)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if conn in self._conns:
                self._conns.remove(conn)
            writer.close()

    async def _command(self, conn: _Conn, lines: list[str]) -> None:
        first, headers = lines[0], _header_lines(lines[1:])
        verb, _, rest = first.partition(" ")
        w = conn.writer
        if verb == "event":
            fmt, _, names = rest.partition(" ")
            conn.format = fmt
            conn.events |= set(names.split())
            w.write(_reply(f"+OK event listener enabled {fmt}"))
        elif verb == "api":
            if self.stalled:
                return  # a switch that has stopped answering (its reply never comes)
            body = await self.api(rest)
            if not w.is_closing():
                w.write(_api_response(body))
        elif verb == "bgapi":
            job = headers.get("Job-UUID") or str(uuid.uuid4())
            w.write(_reply(f"+OK Job-UUID: {job}", {"Job-UUID": job}))
            self._spawn(self._background(job, rest))
        elif verb == "sendmsg":
            w.write(_reply(self._sendmsg(rest.strip(), headers)))
        elif verb == "exit":
            w.write(_reply("+OK bye"))
            w.write(_disconnect_notice())
            w.close()
        else:
            w.write(_reply("-ERR command not found"))

    async def _background(self, job: str, cmd: str) -> None:
        if self.background_delay:
            await asyncio.sleep(self.background_delay)  # a dial that takes its time
        body = await self.api(cmd)
        name = cmd.split(" ", 1)[0]
        self._emit(
            "BACKGROUND_JOB",
            None,
            {
                "Job-UUID": job,
                "Job-Command": name,
                "Job-Command-Arg": cmd[len(name) + 1 :],
                "_body": body,
            },
        )

    # ------------------------------------------------------------ API commands
    async def api(self, cmd: str) -> str:
        name, _, arg = cmd.partition(" ")
        args = arg.split()
        if name == "originate":
            return await self._originate(arg)
        if name == "show" and arg.strip() == "channels as json":
            body = self._show_channels()
            if self.snapshot_delay:
                # The list is taken now and answered later: events meanwhile are newer.
                await asyncio.sleep(self.snapshot_delay)
            return body
        if name == "status":
            return (
                "UP 0 years, 0 days, 0 hours, 0 minutes, 1 second\nFreeSWITCH (eslpeer) is ready\n"
            )
        if name == "uuid_exists":
            return "true" if args and args[0] in self.channels else "false"
        off = False
        if name == "uuid_hold":
            off = bool(args) and args[0] in ("off", "toggle")
            args = args[1:] if args and args[0] in ("off", "toggle") else args
        if not args or args[0] not in self.channels:
            if name.startswith("uuid_"):
                return CHANNEL_NOT_FOUND
            return f"-ERR {name} Command not found!\n"
        ch = self.channels[args[0]]
        if name == "uuid_setvar" and len(args) >= 2:
            ch.variables[args[1]] = " ".join(args[2:])
            return "+OK\n"
        if name == "uuid_answer":
            self.answer(ch.uuid)
            return "+OK\n"
        if name == "uuid_bridge":
            if len(args) < 2 or args[1] not in self.channels:
                return CHANNEL_NOT_FOUND
            self._bridge(ch, self.channels[args[1]])
            return f"+OK {args[1]}\n"
        if name == "uuid_hold":
            if off == ch.held:
                ch.held = not off
                self._emit("CHANNEL_UNHOLD" if off else "CHANNEL_HOLD", ch)
            return "+OK Success\n"
        if name == "uuid_audio":
            ch.muted = args[1:] == ["start", "read", "mute", "1"]
            return "+OK Success\n"
        if name == "uuid_record" and len(args) == 3:
            return self._record(ch, args[1], args[2])
        if name == "uuid_transfer" and len(args) >= 2:
            self._transfer(ch, args[1:])
            return "+OK\n"
        if name == "uuid_recv_dtmf" and len(args) == 2:
            ch.dtmf_sent.append(args[1])
            return "+OK\n"
        if name == "uuid_broadcast" and len(args) >= 2:
            path = args[1]
            self._later(0.01, self._execute_complete, ch.uuid, "playback", path, {})
            return "+OK Message queued\n"
        if name == "uuid_kill":
            self.hangup(ch.uuid, args[1] if len(args) > 1 else "NORMAL_CLEARING")
            return "+OK\n"
        if name == "uuid_dump" and args[1:] == ["json"]:
            h = self._headers("CHANNEL_DATA", ch)
            return json.dumps(h)
        return f"-USAGE: {name} <uuid> ...\n"

    async def _originate(self, arg: str) -> str:
        m = re.match(r"^(?:\{(?P<vars>.*?)(?<!\\)\})?(?P<dial>\S+)\s+(?P<app>\S+)$", arg)
        if m is None:
            return "-ERR INVALID_URL\n"
        variables = _parse_vars(m.group("vars") or "")
        dial = m.group("dial")
        if dial.startswith("user/") and dial.split("/", 1)[1].split("@")[0] in self.unregistered:
            return "-ERR USER_NOT_REGISTERED\n"
        channel_id = variables.pop("origination_uuid", None) or str(uuid.uuid4())
        ch = self._new_outbound(channel_id, dial, variables)
        try:
            await asyncio.wait_for(ch.done.wait(), self.ring_timeout)
        except TimeoutError:
            self.hangup(ch.uuid, "NO_ANSWER")
        if ch.answered and ch.uuid in self.channels:
            return f"+OK {ch.uuid}\n"
        return f"-ERR {ch.hangup_cause or 'NO_ANSWER'}\n"

    def _new_outbound(self, channel_id: str, dial: str, variables: dict[str, str]) -> PeerChannel:
        dest = dial.rsplit("/", 1)[-1].split("@")[0]
        cid = variables.get("origination_caller_id_number", "0000000000")
        ch = PeerChannel(channel_id, "outbound", cid, dest, variables)
        self.channels[ch.uuid] = ch
        self._emit("CHANNEL_CREATE", ch)
        if self.answer_delay is not None:
            self._later(self.answer_delay, self.answer, ch.uuid)
        return ch

    def _show_channels(self) -> str:
        rows = [
            {
                "uuid": ch.uuid,
                "direction": ch.direction,
                "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ch.created)),
                "created_epoch": str(int(ch.created)),
                "name": f"sofia/internal/{ch.dest}@127.0.0.1",
                "state": "CS_EXECUTE" if ch.answered else "CS_ROUTING",
                "cid_name": ch.cid_num,
                "cid_num": ch.cid_num,
                "ip_addr": "127.0.0.1",
                "dest": ch.dest,
                "application": "park",
                "application_data": "",
                "dialplan": "XML",
                "context": "default",
                "read_codec": "PCMU",
                "read_rate": "8000",
                "write_codec": "PCMU",
                "write_rate": "8000",
                "secure": "",
                "hostname": "eslpeer",
                "presence_id": "",
                "callstate": ch.callstate,
                "callee_num": "",
                "call_uuid": ch.bridged_to or "",
            }
            for ch in self.channels.values()
        ]
        if not rows:
            return json.dumps({"row_count": 0})
        return json.dumps({"row_count": len(rows), "rows": rows})

    def _bridge(self, a: PeerChannel, b: PeerChannel) -> None:
        for ch in (a, b):
            partner = self.channels.get(ch.bridged_to) if ch.bridged_to else None
            if partner is not None and partner not in (a, b):
                self._unbridge(ch, partner)
        a.bridged_to, b.bridged_to = b.uuid, a.uuid
        self._emit(
            "CHANNEL_BRIDGE", a, {"Bridge-A-Unique-ID": a.uuid, "Bridge-B-Unique-ID": b.uuid}
        )

    def _unbridge(self, a: PeerChannel, b: PeerChannel) -> None:
        self._emit(
            "CHANNEL_UNBRIDGE", a, {"Bridge-A-Unique-ID": a.uuid, "Bridge-B-Unique-ID": b.uuid}
        )
        a.bridged_to = b.bridged_to = None

    def _record(self, ch: PeerChannel, action: str, path: str) -> str:
        if action == "start":
            ch.recording_since[path] = time.monotonic()
            self._emit("RECORD_START", ch, {"Record-File-Path": path})
            return "+OK Success\n"
        if action == "stop" and path in ch.recording_since:
            ms = int((time.monotonic() - ch.recording_since.pop(path)) * 1000)
            extra = {
                "Record-File-Path": path,
                "variable_record_ms": str(ms),
                "variable_record_seconds": str(ms // 1000),
                "variable_record_samples": str(ms * 8),
            }
            self._emit("RECORD_STOP", ch, extra)
            return "+OK Success\n"
        return f"-ERR Cannot find record file {path}\n"

    def _transfer(self, ch: PeerChannel, args: list[str]) -> None:
        target = args[0]
        partner = self.channels.get(ch.bridged_to) if ch.bridged_to else None
        if target.startswith("conference:"):
            # Into a conference room: out of its bridge; the partner (moving too, in a
            # three-way) is left alone, as the conference app does.
            if partner is not None:
                self._unbridge(ch, partner)
            ch.variables["conference_name"] = target.split(":", 1)[1].split("@")[0]
            return
        if partner is not None:
            self._unbridge(ch, partner)
            if partner.variables.get("park_after_bridge") != "true":
                self.hangup(partner.uuid, "NORMAL_CLEARING")
        # Only the inline `bridge` form is modelled: `[m:^:]bridge:{vars}dial [inline]`.
        if target.startswith("m:"):
            target = target[4:]
        app, _, data = target.partition(":")
        if app != "bridge":
            return
        m = re.match(r"^(?:\{(?P<vars>.*?)(?<!\\)\})?(?P<dial>\S+)$", data)
        if m is None:
            return
        new = self._new_outbound(
            str(uuid.uuid4()), m.group("dial"), _parse_vars(m.group("vars") or "")
        )

        async def bridge_on_answer() -> None:
            await new.done.wait()
            if new.answered and ch.uuid in self.channels and new.uuid in self.channels:
                self._bridge(ch, new)

        self._spawn(bridge_on_answer())

    # ------------------------------------------------------------ sendmsg
    def _sendmsg(self, channel_id: str, headers: dict[str, str]) -> str:
        ch = self.channels.get(channel_id)
        if ch is None:
            return f"-ERR invalid session id [{channel_id}]"
        if headers.get("call-command") != "execute":
            return "+OK"
        app = headers.get("execute-app-name", "")
        data = headers.get("execute-app-arg", "")
        if app == "set":
            key, _, value = data.partition("=")
            ch.variables[key] = value
        elif app == "eavesdrop":
            ch.eavesdrop_target = data
        elif app == "play_and_get_digits":
            args = data.split()
            var = args[7] if len(args) > 7 else "pagd_digits"
            done = {f"variable_{var}": self.collected_digits}
            self._later(0.01, self._execute_complete, ch.uuid, app, data, done)
        elif app == "playback":
            self._later(0.01, self._execute_complete, ch.uuid, app, data, {})
        return "+OK"

    def _execute_complete(
        self, channel_id: str, app: str, data: str, variables: dict[str, str]
    ) -> None:
        ch = self.channels.get(channel_id)
        if ch is None:
            return
        for key, value in variables.items():
            ch.variables[key.removeprefix("variable_")] = value
        self._emit(
            "CHANNEL_EXECUTE_COMPLETE",
            ch,
            {"Application": app, "Application-Data": data, "Application-Response": "_none_"},
        )


# ---------------------------------------------------------------- framing helpers
async def _read_command(reader: asyncio.StreamReader) -> list[str] | None:
    lines: list[str] = []
    while True:
        raw = await reader.readline()
        if not raw:
            return None
        line = raw.decode().rstrip("\r\n")
        if not line:
            if lines:
                return lines
            continue
        lines.append(line)


def _header_lines(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def _parse_vars(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in re.split(r"(?<!\\),", block):
        if "=" in part:
            key, _, value = part.partition("=")
            out[key] = value.replace("\\,", ",")
    return out


def _reply(text: str, extra: dict[str, str] | None = None) -> bytes:
    head = "Content-Type: command/reply\n" + f"Reply-Text: {text}\n"
    for key, value in (extra or {}).items():
        head += f"{key}: {value}\n"
    return (head + "\n").encode()


def _api_response(body: str) -> bytes:
    data = body.encode()
    return f"Content-Type: api/response\nContent-Length: {len(data)}\n\n".encode() + data


def _disconnect_notice() -> bytes:
    body = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    head = f"Content-Type: text/disconnect-notice\nContent-Length: {len(body)}\n\n"
    return head.encode() + body


def _event_frame(headers: dict[str, str], fmt: str) -> bytes:
    if fmt == "json":
        body = json.dumps(headers).encode()
        kind = "text/event-json"
    else:
        event_body = headers.get("_body")
        lines = [f"{k}: {quote(v, safe='')}\n" for k, v in headers.items() if k != "_body"]
        if event_body is not None:
            data = event_body.encode()
            lines.append(f"Content-Length: {len(data)}\n")
            body = ("".join(lines) + "\n").encode() + data
        else:
            body = ("".join(lines) + "\n").encode()
        kind = "text/event-plain"
    return f"Content-Length: {len(body)}\nContent-Type: {kind}\n\n".encode() + body
