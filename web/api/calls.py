"""Calls API: the call log (AX16), recording search and download (AX20, AX22) and call
detail records for billing (PR4, PR6), all read from the call log read model.

Reads only: calls are written by the telephony facts (connectors), never through here.
The read model follows the event store, so a call that just ended shows within the
projection's lag.

The tenant wall: every query names the tenant of the path, so another tenant's call or
recording is "not found", not "forbidden" (which would say it exists). A recording's file
is served only from under `<data_dir>/recordings/<tenant>/`, where the telephony bridge
writes that tenant's recordings, whatever path the recording's `uri` names.

A recording is addressed by a key, `<call id>_<16 hex digits>`: the digits are a hash of
the recording id (the switch names a recording by its file path, which is neither
URL-safe nor something a client should see), so the key stays the same however many
recordings the call gets.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

import msgspec
from litestar import Router, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import File, Stream

from domain.vocabulary import Direction
from projections.calllog import CallLogReadModel
from web.api.errors import READ_ERRORS, exception_handlers, tenant_path
from web.api.params import (
    Limit,
    Offset,
    Since,
    choices,
    flag,
    page,
    path_id,
    period,
    typed,
    uuid_query,
)

OUTCOMES = ("in_progress", "answered", "abandoned", "missed", "no_answer")
DIRECTIONS = tuple(d.value for d in Direction)
# Records per read-model query while a CDR export streams.
CDR_PAGE = 1000

# The CDR's columns, in the order the CSV has them (the JSON records have the same keys).
CDR_COLUMNS = (
    "tenant_id",
    "call_id",
    "call_ref",
    "direction",
    "hotline",
    "customer_number",
    "queue_id",
    "outcome",
    "end_cause",
    "started_at",
    "answered_at",
    "ended_at",
    "wait_seconds",
    "ring_seconds",
    "hold_seconds",
    "talk_seconds",
    "duration_seconds",
    "customer_endpoint",
    "on_net",
    "agents",
    "agent_endpoints",
    "transfer_count",
    "recording_count",
)

_KEY = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_([0-9a-f]{16})")
_json = msgspec.json.Encoder()


class CallSummary(msgspec.Struct):
    """A call as the call log lists it. `outcome`: in_progress, answered, abandoned,
    missed or no_answer; times ISO 8601; seconds null while they do not apply yet."""

    id: str
    tenant_id: str
    call_ref: str
    direction: str
    hotline: str | None
    customer_number: str | None
    queue_id: str | None
    queues: list[str]
    agents: list[str]
    outcome: str
    started_at: str
    offered_at: str | None
    answered_at: str | None
    ended_at: str | None
    wait_seconds: float | None
    ring_seconds: float | None
    talk_seconds: float | None
    hold_seconds: float | None
    duration_seconds: float | None
    abandoned: bool
    transfer_count: int
    recording_count: int
    version: int
    updated_at: str


class CallPage(msgspec.Struct):
    items: list[CallSummary]
    limit: int
    offset: int
    next_offset: int | None


class CallLeg(msgspec.Struct):
    leg_id: str
    party: str
    endpoint: str | None
    address: str | None
    user_id: str | None
    created_at: str
    answered_at: str | None
    ended_at: str | None
    end_cause: str | None
    on_net: bool | None


class Recording(msgspec.Struct):
    """A recording: `key` addresses it, `download_url` is its audio once `stored`."""

    key: str
    recording_id: str
    started_at: str
    stopped_at: str | None
    duration_seconds: float | None
    size_bytes: int | None
    metadata: dict[str, Any]
    stored: bool
    download_url: str | None


class FoundRecording(Recording):
    """A recording with its call's facts, as the search finds it."""

    call_id: str
    call_ref: str
    direction: str
    hotline: str | None
    customer_number: str | None
    agents: list[str]
    call_started_at: str


class RecordingPage(msgspec.Struct):
    items: list[FoundRecording]
    limit: int
    offset: int
    next_offset: int | None


class CallDetail(CallSummary):
    """A call with its legs (in the order they joined) and recordings."""

    ended_by_leg_id: str | None
    end_cause: str | None
    forced_by: str | None
    legs: list[CallLeg]
    recordings: list[Recording]


class CallsContext(Protocol):
    """What the calls API reads: the call log and where the recordings are."""

    @property
    def call_log(self) -> CallLogReadModel: ...

    @property
    def data_dir(self) -> Path: ...


def recording_key(call_id: str, recording_id: str) -> str:
    digest = hashlib.sha256(recording_id.encode()).hexdigest()[:16]
    return f"{call_id}_{digest}"


def calls_router(ctx: CallsContext) -> Router:
    base = "/api/v1/tenants/{tenant_id:str}"

    def audio_url(tenant: str, call_id: str, recording: dict[str, Any]) -> str | None:
        if recording["uri"] is None:
            return None  # still recording, or its file not stored yet
        key = recording_key(call_id, recording["recording_id"])
        return f"{base.replace('{tenant_id:str}', tenant)}/recordings/{key}/audio"

    def shown(tenant: str, call_id: str, recording: dict[str, Any]) -> dict[str, Any]:
        # The uri is a path on the server: clients get the key and the download URL instead.
        fields = {k: v for k, v in recording.items() if k != "uri"}
        return {
            "key": recording_key(call_id, recording["recording_id"]),
            **fields,
            "stored": recording["uri"] is not None,
            "download_url": audio_url(tenant, call_id, recording),
        }

    @get("/calls", responses=READ_ERRORS)
    async def list_calls(
        tenant_id: FromPath[str],
        direction: FromQuery[str | None] = None,
        outcome: FromQuery[str | None] = None,
        agent: FromQuery[str | None] = None,
        queue: FromQuery[str | None] = None,
        from_: Since = None,
        to: FromQuery[str | None] = None,
        number: FromQuery[str | None] = None,
        has_recording: FromQuery[str | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> CallPage:
        """The call log, newest first: `direction` and `outcome` take one value or several
        (comma-separated); `agent` and `queue` ids; `from`/`to`: the start time, `to`
        exclusive; `number`: part of the customer's number or the hotline."""
        tenant = tenant_path(tenant_id)
        since, until = period(from_, to)
        rows = ctx.call_log.list(
            tenant,
            direction=choices("direction", direction, DIRECTIONS),
            outcome=choices("outcome", outcome, OUTCOMES),
            agent_id=uuid_query("agent", agent),
            queue_id=uuid_query("queue", queue),
            since=since,
            until=until,
            number=number,
            has_recording=flag("has_recording", has_recording),
            # One more than asked: whether there is a next page, without counting them all.
            limit=limit + 1,
            offset=offset,
        )
        return typed(page(rows, limit, offset), CallPage)

    @get("/calls/{call_id:str}", responses=READ_ERRORS)
    async def show_call(tenant_id: FromPath[str], call_id: FromPath[str]) -> CallDetail:
        tenant = tenant_path(tenant_id)
        call = ctx.call_log.get(tenant, path_id("call", call_id))
        if call is None:
            raise NotFoundException(f"call {call_id} not found")
        recordings = [shown(tenant, call["id"], r) for r in call["recordings"]]
        return typed({**call, "recordings": recordings}, CallDetail)

    @get("/recordings", responses=READ_ERRORS)
    async def search_recordings(
        tenant_id: FromPath[str],
        call: FromQuery[str | None] = None,
        agent: FromQuery[str | None] = None,
        number: FromQuery[str | None] = None,
        from_: Since = None,
        to: FromQuery[str | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> RecordingPage:
        """Recordings, newest first, by `call` id, `agent` id, `number` (part of the
        customer's number or the hotline), `from`/`to` (the recording's start)."""
        tenant = tenant_path(tenant_id)
        since, until = period(from_, to)
        rows = ctx.call_log.recordings(
            tenant,
            call_id=uuid_query("call", call),
            agent_id=uuid_query("agent", agent),
            number=number,
            since=since,
            until=until,
            limit=limit + 1,
            offset=offset,
        )
        found = page([shown(tenant, r["call_id"], r) for r in rows], limit, offset)
        return typed(found, RecordingPage)

    @get("/recordings/{recording_key:str}/audio", responses=READ_ERRORS)
    async def recording_audio(tenant_id: FromPath[str], recording_key: FromPath[str]) -> File:
        tenant = tenant_path(tenant_id)
        recording = _find_recording(ctx.call_log, tenant, recording_key)
        if recording is None:
            raise NotFoundException(f"recording {recording_key} not found")
        if recording["uri"] is None:
            raise NotFoundException(f"recording {recording_key} has no stored file yet")
        path = _tenant_file(ctx.data_dir, tenant, recording["uri"])
        if path is None:
            raise NotFoundException(f"recording {recording_key} not found")
        if not path.is_file():
            raise NotFoundException(f"the file of recording {recording_key} is missing")
        return File(
            path=path,
            filename=path.name,
            media_type="audio/wav",
            content_disposition_type="attachment",
        )

    @get("/cdr", responses=READ_ERRORS)
    async def call_detail_records(
        tenant_id: FromPath[str],
        from_: Since = None,
        to: FromQuery[str | None] = None,
        format_: Annotated[str, QueryParameter(name="format")] = "csv",
    ) -> Stream:
        """The calls that ended in [`from`, `to`), oldest end first, one record each, as
        CSV (default) or a JSON array."""
        tenant = tenant_path(tenant_id)
        since, until = period(from_, to)
        if since is None or until is None:
            raise ValidationException("from and to are required: the period billed")
        if format_ not in ("csv", "json"):
            raise ValidationException(f"format: {format_!r} is not one of csv, json")
        records = _cdr_records(ctx.call_log, tenant, since, until)
        name = f"cdr-{tenant}-{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}.{format_}"
        if format_ == "csv":
            body, media_type = _csv(records), "text/csv; charset=utf-8"
        else:
            body, media_type = _json_array(records), "application/json"
        # Streamed a page at a time: a month of a busy tenant's calls need not fit in memory.
        return Stream(
            body,
            media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return Router(
        path=base,
        route_handlers=[
            list_calls,
            show_call,
            search_recordings,
            recording_audio,
            call_detail_records,
        ],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        tags=["calls"],
    )


def _find_recording(model: CallLogReadModel, tenant: str, key: str) -> dict[str, Any] | None:
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    call = model.get(tenant, match[1])
    if call is None:
        return None
    for recording in call["recordings"]:
        if recording_key(call["id"], recording["recording_id"]) == key:
            return recording
    return None


def _tenant_file(data_dir: Path, tenant: str, uri: str) -> Path | None:
    """The recording's file if it lies under the tenant's recordings folder, else None.

    Resolved (symlinks and `..` followed) before the check: a uri naming another
    tenant's file, or anything else on the server, through a link or a relative path,
    is not served.
    """
    text = uri.removeprefix("file://")
    if "://" in text:
        return None  # stored elsewhere (object storage): not a file this server holds
    try:
        root = (data_dir / "recordings" / tenant).resolve()
        path = Path(text).resolve()
    except (OSError, ValueError):  # a NUL byte, a symlink loop
        return None
    if path == root or not path.is_relative_to(root):
        return None
    return path


def _cdr_records(
    model: CallLogReadModel, tenant: str, since: datetime, until: datetime
) -> Iterator[dict[str, Any]]:
    after: tuple[str, str] | None = None
    while True:
        page = model.cdr(tenant, since=since, until=until, after=after, limit=CDR_PAGE)
        yield from page
        if len(page) < CDR_PAGE:
            return
        after = (page[-1]["ended_at"], page[-1]["call_id"])


def _csv(records: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CDR_COLUMNS)
    for record in records:
        writer.writerow([_cell(record[column]) for column in CDR_COLUMNS])
        if buffer.tell() > 64_000:
            yield _take(buffer)
    yield _take(buffer)


def _take(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


def _json_array(records: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    yield b"["
    first = True
    for record in records:
        yield (b"" if first else b",") + _json.encode(
            {column: record[column] for column in CDR_COLUMNS}
        )
        first = False
    yield b"]"
