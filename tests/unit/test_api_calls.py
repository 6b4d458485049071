"""The calls API: the call log, one call, recordings search and download, CDRs, and the
tenant walls around each, on a read model built from domain events."""

from __future__ import annotations

import csv
import io
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar.testing import TestClient, create_test_client

from domain.apps import DomainApps
from domain.call_legs import LegSpec
from domain.vocabulary import EndpointKind
from projections.calllog import CallLogReadModel
from projections.replay import catch_up
from web.api.calls import CDR_COLUMNS, calls_router, recording_key

A, B = "acme", "bravo"
HOTLINE = "1900555"
AGENT_1, AGENT_2 = uuid4(), uuid4()
QUEUE = uuid4()
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def q(seconds: float) -> str:
    """A time as a query value: "+00:00" spelled Z, so that no "+" needs encoding."""
    return t(seconds).isoformat().replace("+00:00", "Z")


@dataclass
class Ctx:
    call_log: CallLogReadModel
    data_dir: Path


def write_wav(path: Path, seconds: float = 0.25) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x01\x02" * int(8000 * seconds))
    return path.read_bytes()


@dataclass
class World:
    client: TestClient[Any]
    data_dir: Path
    calls: dict[str, UUID]
    recordings: dict[str, Path]
    audio: bytes


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> Iterator[DomainApps]:
    built = DomainApps.build(transcoder_env)
    yield built
    built.close()


@pytest.fixture
def world(apps: DomainApps, tmp_path: Path) -> Iterator[World]:
    data_dir = tmp_path / "data"
    folder_a, folder_b = data_dir / "recordings" / A, data_dir / "recordings" / B
    calls = apps.calls
    files = {
        "answered": folder_a / "sw-1-aaaa0001.wav",
        "outbound": folder_a / "sw-3-aaaa0003.wav",
        "missing": folder_a / "sw-4-aaaa0004.wav",  # stored, then lost from the disk
        "escaped": folder_b / "sw-9-bbbb0009.wav",  # tenant A's uri, tenant B's file
        "other": folder_b / "sw-1-bbbb0001.wav",
    }
    audio = write_wav(files["answered"])
    write_wav(files["outbound"], 0.1)
    write_wav(files["escaped"])
    write_wav(files["other"])

    def recorded(tenant: str, call: UUID, name: str, start: float, stop: float) -> None:
        file = files[name]
        path = str(file)  # the bridge names a recording by its file
        size = file.stat().st_size if file.exists() else 44
        calls.start_recording(tenant, call, path, t(start))
        calls.stop_recording(tenant, call, path, t(stop))
        calls.store_recording(tenant, call, path, path, stop - start, size, t(stop + 1))

    customer = LegSpec.customer("c", "0912345678", on_net=True)
    answered = calls.start_inbound(A, "sw-1", HOTLINE, customer, t(0))
    calls.offer_to_queue(A, answered, QUEUE, t(10))
    calls.ring_agent(A, answered, LegSpec.agent("a1", AGENT_1, EndpointKind.WEBRTC, "a1"), t(20))
    calls.answer(A, answered, "a1", t(25))
    recorded(A, answered, "answered", 26, 90)
    calls.hang_up(A, answered, "c", "normal_clearing", t(100))

    abandoned = calls.start_inbound(A, "sw-2", HOTLINE, LegSpec.customer("c", "0987654321"), t(200))
    calls.offer_to_queue(A, abandoned, QUEUE, t(205))
    calls.hang_up(A, abandoned, "c", "normal_clearing", t(230))

    outbound = calls.start_outbound(
        A,
        "sw-3",
        HOTLINE,
        LegSpec.agent("a2", AGENT_2, EndpointKind.SIP_PHONE, "102"),
        LegSpec.customer("c", "0900333444", on_net=False),
        t(300),
    )
    calls.answer(A, outbound, "c", t(305))
    recorded(A, outbound, "outbound", 306, 350)
    recorded(A, outbound, "escaped", 351, 355)
    calls.hang_up(A, outbound, "a2", "normal_clearing", t(365))

    missing = calls.start_inbound(A, "sw-4", HOTLINE, LegSpec.customer("c", "0911"), t(400))
    calls.ring_agent(A, missing, LegSpec.agent("a1", AGENT_1, EndpointKind.WEBRTC, "a1"), t(401))
    calls.answer(A, missing, "a1", t(402))
    recorded(A, missing, "missing", 403, 410)
    calls.hang_up(A, missing, "c", "normal_clearing", t(420))

    live = calls.start_inbound(A, "sw-5", HOTLINE, LegSpec.customer("c", "0922"), t(500))
    calls.ring_agent(A, live, LegSpec.agent("a2", AGENT_2, EndpointKind.MOBILE, "0933"), t(501))
    calls.answer(A, live, "a2", t(502))
    calls.start_recording(A, live, str(folder_a / "sw-5-aaaa0005.wav"), t(503))

    other = calls.start_inbound(B, "sw-1", HOTLINE, LegSpec.customer("c", "0912345678"), t(50))
    calls.ring_agent(B, other, LegSpec.agent("a1", AGENT_1, EndpointKind.WEBRTC, "a1"), t(51))
    calls.answer(B, other, "a1", t(52))
    recorded(B, other, "other", 53, 80)
    calls.hang_up(B, other, "c", "normal_clearing", t(90))

    model = CallLogReadModel(tmp_path / "call_log.sqlite")
    catch_up(model, apps)
    router = calls_router(Ctx(call_log=model, data_dir=data_dir))
    with create_test_client(route_handlers=[router]) as client:
        yield World(
            client=client,
            data_dir=data_dir,
            calls={
                "answered": answered,
                "abandoned": abandoned,
                "outbound": outbound,
                "missing": missing,
                "live": live,
                "other": other,
            },
            recordings=files,
            audio=audio,
        )


def url(tenant: str, rest: str) -> str:
    return f"/api/v1/tenants/{tenant}/{rest}"


def names(world: World, ids: list[str]) -> list[str]:
    by_id = {str(v): k for k, v in world.calls.items()}
    return [by_id[i] for i in ids]


def listed(world: World, query: str = "", tenant: str = A) -> list[str]:
    response = world.client.get(url(tenant, f"calls?{query}"))
    assert response.status_code == 200, response.text
    return names(world, [c["id"] for c in response.json()["items"]])


def key_of(world: World, name: str, tenant: str = A) -> str:
    call = "other" if tenant == B else ("outbound" if name == "escaped" else name)
    return recording_key(str(world.calls[call]), str(world.recordings[name]))


def test_the_log_filtered_and_paged(world: World) -> None:
    newest_first = ["live", "missing", "outbound", "abandoned", "answered"]
    assert listed(world) == newest_first
    assert listed(world, tenant=B) == ["other"]
    assert listed(world, "direction=outbound") == ["outbound"]
    assert listed(world, "direction=inbound,outbound&outcome=answered") == [
        "missing",
        "outbound",
        "answered",
    ]
    assert listed(world, "outcome=abandoned") == ["abandoned"]
    assert listed(world, "outcome=in_progress") == ["live"]
    assert listed(world, f"agent={AGENT_1}") == ["missing", "answered"]
    assert listed(world, f"queue={QUEUE}") == ["abandoned", "answered"]
    assert listed(world, f"from={q(200)}&to={q(400)}") == ["outbound", "abandoned"]
    # An unencoded "+" arrives as a space; the offset is still read.
    assert listed(world, "from=2025-03-03T16:03:20+07:00&to=2025-03-03T16:06:40%2B07:00") == [
        "outbound",
        "abandoned",
    ]
    assert listed(world, "number=0987") == ["abandoned"]
    assert listed(world, "has_recording=true") == ["live", "missing", "outbound", "answered"]
    assert listed(world, "has_recording=false") == ["abandoned"]

    first = world.client.get(url(A, "calls?limit=2")).json()
    assert names(world, [c["id"] for c in first["items"]]) == ["live", "missing"]
    assert (first["limit"], first["offset"], first["next_offset"]) == (2, 0, 2)
    last = world.client.get(url(A, "calls?limit=2&offset=4")).json()
    assert names(world, [c["id"] for c in last["items"]]) == ["answered"]
    assert last["next_offset"] is None

    row = world.client.get(url(A, "calls?direction=outbound")).json()["items"][0]
    assert row["call_ref"] == "sw-3"
    assert row["recording_count"] == 2


@pytest.mark.parametrize(
    "query",
    [
        "direction=sideways",
        "outcome=answered,lost",
        "agent=bob",
        "queue=123",
        "from=yesterday",
        "from=2025-03-03T09:00:00",  # no zone
        f"from={q(100)}&to={q(50)}",
        "has_recording=maybe",
        "limit=abc",
        "limit=0",
        "limit=100000",
        "offset=-1",
        "offset=99999999999999999999",
    ],
)
def test_malformed_filters_are_400_with_a_reason(world: World, query: str) -> None:
    response = world.client.get(url(A, f"calls?{query}"))
    assert response.status_code == 400, (query, response.text)
    assert response.json()["detail"]


def test_one_call_with_legs_and_recordings(world: World) -> None:
    call_id = world.calls["outbound"]
    response = world.client.get(url(A, f"calls/{call_id}"))
    assert response.status_code == 200
    call = response.json()
    assert (call["id"], call["call_ref"], call["outcome"]) == (str(call_id), "sw-3", "answered")
    assert [(leg["leg_id"], leg["endpoint"], leg["on_net"]) for leg in call["legs"]] == [
        ("a2", "sip_phone", None),
        ("c", "pstn", False),
    ]
    recordings = call["recordings"]
    assert [r["key"] for r in recordings] == [
        key_of(world, "outbound"),
        key_of(world, "escaped"),
    ]
    assert recordings[0]["download_url"] == url(A, f"recordings/{key_of(world, 'outbound')}/audio")
    assert all("uri" not in r for r in recordings)  # a server path, not for clients

    live = world.client.get(url(A, f"calls/{world.calls['live']}")).json()
    assert [(r["stored"], r["download_url"]) for r in live["recordings"]] == [(False, None)]


def test_a_call_is_not_found_through_another_tenant(world: World) -> None:
    assert world.client.get(url(B, f"calls/{world.calls['answered']}")).status_code == 404
    assert world.client.get(url(A, f"calls/{world.calls['other']}")).status_code == 404
    assert world.client.get(url(A, f"calls/{uuid4()}")).status_code == 404
    assert world.client.get(url(A, "calls/not-a-call")).status_code == 404
    assert world.client.get(url("bad tenant!", "calls")).status_code == 400


def test_recordings_search(world: World) -> None:
    def found(query: str = "", tenant: str = A) -> list[str]:
        response = world.client.get(url(tenant, f"recordings?{query}"))
        assert response.status_code == 200, response.text
        by_key = {key_of(world, n): n for n in world.recordings if n != "other"}
        by_key[key_of(world, "other", B)] = "other"
        return [by_key.get(r["key"], r["recording_id"]) for r in response.json()["items"]]

    live_recording = str(world.data_dir / "recordings" / A / "sw-5-aaaa0005.wav")
    assert found() == [live_recording, "missing", "escaped", "outbound", "answered"]
    assert found(tenant=B) == ["other"]
    assert found(f"call={world.calls['outbound']}") == ["escaped", "outbound"]
    assert found(f"call={world.calls['other']}") == []
    assert found(f"agent={AGENT_1}") == ["missing", "answered"]
    assert found("number=0900333") == ["escaped", "outbound"]
    assert found(f"from={q(300)}&to={q(500)}") == ["missing", "escaped", "outbound"]
    assert found("limit=1&offset=1") == ["missing"]
    assert world.client.get(url(A, "recordings?call=nope")).status_code == 400
    assert world.client.get(url(A, "recordings?to=soon")).status_code == 400

    answered = world.client.get(url(A, f"recordings?call={world.calls['answered']}")).json()
    assert answered["items"] == [
        {
            "key": key_of(world, "answered"),
            "call_id": str(world.calls["answered"]),
            "call_ref": "sw-1",
            "recording_id": str(world.recordings["answered"]),
            "direction": "inbound",
            "hotline": HOTLINE,
            "customer_number": "0912345678",
            "agents": [str(AGENT_1)],
            "call_started_at": t(0).isoformat(timespec="microseconds"),
            "started_at": t(26).isoformat(timespec="microseconds"),
            "stopped_at": t(90).isoformat(timespec="microseconds"),
            "duration_seconds": 64.0,
            "size_bytes": len(world.audio),
            "metadata": {},
            "stored": True,
            "download_url": url(A, f"recordings/{key_of(world, 'answered')}/audio"),
        }
    ]


def test_audio_download_is_the_file(world: World) -> None:
    response = world.client.get(url(A, f"recordings/{key_of(world, 'answered')}/audio"))
    assert response.status_code == 200
    assert response.content == world.audio
    assert response.headers["content-type"] == "audio/wav"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment") and "sw-1-aaaa0001.wav" in disposition

    other = world.client.get(url(B, f"recordings/{key_of(world, 'other', B)}/audio"))
    assert other.status_code == 200
    assert other.content == world.recordings["other"].read_bytes()


def test_audio_behind_the_tenant_wall(world: World, tmp_path: Path) -> None:
    def status(tenant: str, key: str) -> tuple[int, str]:
        response = world.client.get(url(tenant, f"recordings/{key}/audio"))
        return response.status_code, response.json()["detail"]

    # Tenant B's recording asked through tenant A's path, and the other way round.
    assert status(A, key_of(world, "other", B))[0] == 404
    assert status(B, key_of(world, "answered"))[0] == 404
    # Tenant A's recording whose uri names a file in tenant B's folder.
    assert status(A, key_of(world, "escaped"))[0] == 404
    # The file is gone from the disk.
    code, detail = status(A, key_of(world, "missing"))
    assert code == 404 and "missing" in detail
    # Not stored yet.
    live = world.client.get(url(A, f"calls/{world.calls['live']}")).json()["recordings"][0]
    code, detail = status(A, live["key"])
    assert code == 404 and "no stored file" in detail
    # Keys that name nothing.
    assert status(A, f"{world.calls['answered']}_0000000000000000")[0] == 404
    assert status(A, "..%2F..%2Fetc%2Fpasswd")[0] == 404
    assert status(A, "garbage")[0] == 404


def test_audio_through_a_link_out_of_the_folder_is_not_served(
    apps: DomainApps, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    secret = tmp_path / "secret.wav"
    write_wav(secret)
    folder = data_dir / "recordings" / A
    folder.mkdir(parents=True)
    link = folder / "sw-7-link.wav"
    link.symlink_to(secret)
    dotted = f"{folder}/../{B}/x.wav"
    write_wav(data_dir / "recordings" / B / "x.wav")
    calls = apps.calls
    call = calls.start_inbound(A, "sw-7", HOTLINE, LegSpec.customer("c", "0912"), t(0))
    calls.ring_agent(A, call, LegSpec.agent("a1", AGENT_1, EndpointKind.WEBRTC, "a1"), t(1))
    calls.answer(A, call, "a1", t(2))
    for index, uri in enumerate((str(link), dotted, "s3://bucket/sw-7.wav", "/etc/passwd")):
        calls.start_recording(A, call, f"rec-{index}", t(3 + index))
        calls.stop_recording(A, call, f"rec-{index}", t(3.5 + index))
        calls.store_recording(A, call, f"rec-{index}", uri, 0.5, 44, t(4 + index))
    model = CallLogReadModel(tmp_path / "call_log.sqlite")
    catch_up(model, apps)
    with create_test_client([calls_router(Ctx(call_log=model, data_dir=data_dir))]) as client:
        for index in range(4):
            key = recording_key(str(call), f"rec-{index}")
            response = client.get(url(A, f"recordings/{key}/audio"))
            assert response.status_code == 404, index


def test_cdr_as_csv(world: World) -> None:
    response = world.client.get(url(A, f"cdr?from={q(0)}&to={q(1000)}&format=csv"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == CDR_COLUMNS
    records = [dict(zip(CDR_COLUMNS, row, strict=True)) for row in rows[1:]]
    # Ended calls only, in the order they ended; the live call and tenant B's are not there.
    assert names(world, [r["call_id"] for r in records]) == [
        "answered",
        "abandoned",
        "outbound",
        "missing",
    ]
    answered, abandoned, outbound, _ = records
    assert answered == {
        "tenant_id": A,
        "call_id": str(world.calls["answered"]),
        "call_ref": "sw-1",
        "direction": "inbound",
        "hotline": HOTLINE,
        "customer_number": "0912345678",
        "queue_id": str(QUEUE),
        "outcome": "answered",
        "end_cause": "normal_clearing",
        "started_at": t(0).isoformat(timespec="microseconds"),
        "answered_at": t(25).isoformat(timespec="microseconds"),
        "ended_at": t(100).isoformat(timespec="microseconds"),
        "wait_seconds": "15.0",
        "ring_seconds": "5.0",
        "hold_seconds": "0.0",
        "talk_seconds": "75.0",
        "duration_seconds": "100.0",
        "customer_endpoint": "pstn",
        "on_net": "true",
        "agents": str(AGENT_1),
        "agent_endpoints": "webrtc",
        "transfer_count": "0",
        "recording_count": "1",
    }
    assert (abandoned["outcome"], abandoned["on_net"], abandoned["agent_endpoints"]) == (
        "abandoned",
        "",
        "",
    )
    assert (outbound["direction"], outbound["on_net"], outbound["agent_endpoints"]) == (
        "outbound",
        "false",
        "sip_phone",
    )
    assert outbound["recording_count"] == "2"

    # The period is by the end time, `to` exclusive.
    period = world.client.get(url(A, f"cdr?from={q(230)}&to={q(420)}")).text
    ended = [row[1] for row in csv.reader(io.StringIO(period))][1:]
    assert names(world, ended) == ["abandoned", "outbound"]
    empty = world.client.get(url(A, f"cdr?from={q(2000)}&to={q(3000)}")).text
    assert list(csv.reader(io.StringIO(empty))) == [list(CDR_COLUMNS)]


def test_cdr_as_json_pages_through_the_read_model(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of one record: every page boundary is crossed.
    monkeypatch.setattr("web.api.calls.CDR_PAGE", 1)
    response = world.client.get(url(A, f"cdr?from={q(0)}&to={q(1000)}&format=json"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    records = response.json()
    assert names(world, [r["call_id"] for r in records]) == [
        "answered",
        "abandoned",
        "outbound",
        "missing",
    ]
    assert all(tuple(r) == CDR_COLUMNS for r in records)
    outbound = records[2]
    assert outbound["on_net"] is False
    assert outbound["agents"] == [str(AGENT_2)]
    assert outbound["agent_endpoints"] == ["sip_phone"]
    assert (outbound["talk_seconds"], outbound["duration_seconds"]) == (60.0, 65.0)

    b = world.client.get(url(B, f"cdr?from={q(0)}&to={q(1000)}&format=json")).json()
    assert [r["call_id"] for r in b] == [str(world.calls["other"])]
    assert [r["tenant_id"] for r in b] == [B]


@pytest.mark.parametrize(
    "query",
    [
        "",
        f"from={q(0)}",
        f"to={q(0)}",
        f"from=%20&to={q(0)}",
        f"from={q(0)}&to={q(10)}&format=xml",
        f"from={q(10)}&to={q(0)}",
        "from=2025-03-03&to=2025-03-04",  # no zone
        "from=monday&to=friday",
    ],
)
def test_cdr_needs_a_valid_period_and_format(world: World, query: str) -> None:
    response = world.client.get(url(A, f"cdr?{query}"))
    assert response.status_code == 400, (query, response.text)
    assert response.json()["detail"]
