"""Malformed requests never get a 5xx: every operation of the API, as the instance's own
OpenAPI document lists it, is sent bad path ids, wrong query values, broken and wrongly
typed bodies, the wrong content type, oversized values, an unknown tenant, another
tenant's key and no key — and every answer must be a 4xx (or a 2xx for what is merely
odd) with a JSON message, on a real `cloudcc up`.

The document drives it, so a route added later is covered without touching this file.
A fixed list of nasty values runs first; then random text and JSON from a seeded
generator (so a failure repeats).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID, uuid4

import httpx
import pytest
from helpers import api_headers, running_instance

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.call_legs import LegSpec
from domain.vocabulary import Channel, Package

A, B = "robust-a", "robust-b"
METHODS = ("get", "post", "put", "patch", "delete")

# Path ids: not ids, numbers too big for anything, traversal, bytes that are not UTF-8,
# NUL, a slash, SQL, emoji, and a very long one.
BAD_PATH_VALUES = [
    "not-an-id",
    "0",
    "-1",
    "9" * 60,
    "1e309",
    "%2e%2e",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "%ff%fe",
    "a%2Fb",
    "%27%20OR%201%3D1%20--",
    quote("😀 hà nội"),
    "x" * 5000,
    str(uuid4()).upper(),
    f"{uuid4()}_{'0' * 16}",
]
# Tenants in the path that are malformed, unknown, or someone else's.
BAD_TENANTS = ["no-such-tenant", "UPPER", "%00", "..", "%ff", "t" * 3000, quote("hà-nội"), B]
# Query values of the wrong type or size, for any parameter.
BAD_QUERY_VALUES = [
    "",
    " ",
    "-1",
    "0",
    "99999999999999999999999",
    "1e309",
    "nan",
    "true",
    "[]",
    "{}",
    "null",
    "\x00",
    "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
    "2025-13-45T99:99:99",
    "2025-03-03T09:00:00",
    "2025-03-03T09:00:00 07:00",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-12:00",
    "9999-12-31T23:59:59Z",
    ",,,",
    "chat," * 5000,
    "updated,created",
    "a,b",
    "x" * 20000,
    "' OR 1=1 --",
    "%",
    "_",
    "😀",
]
# Bodies that are not JSON, or JSON of the wrong shape.
BAD_BODIES: list[tuple[bytes, str]] = [
    (b"{", "application/json"),
    (b"", "application/json"),
    (b"null", "application/json"),
    (b"[]", "application/json"),
    (b'"text"', "application/json"),
    (b"12", "application/json"),
    (b"\xff\xfe\x00", "application/json"),
    (b"[" * 100_000, "application/json"),
    (b'{"a": ' * 10_000 + b"1" + b"}" * 10_000, "application/json"),
    (json.dumps({"x": "y" * 2_000_000}).encode(), "application/json"),
    (b'{"title": "x", "kind": "request"}', "text/plain"),
    (b"title=x&kind=request", "application/x-www-form-urlencoded"),
    (b"--b\r\n\r\n", "multipart/form-data; boundary=b"),
    (b"{}", "application/xml"),
]
# Values of the wrong type for any field of a body.
WRONG_FIELD_VALUES: list[Any] = [
    None,
    5,
    -1,
    10**30,
    1.5,
    True,
    "",
    "x" * 100_000,
    "not-an-id",
    [],
    ["not-an-id"] * 1000,
    {},
    {"nested": [1, 2]},
]


# Ids of things tenant A has, by the name of the path parameter or body field naming one.
KNOWN: dict[str, str] = {}


@dataclass
class Operation:
    method: str
    path: str  # as the document has it, "/api/v1/tenants/{tenant_id}/..."
    path_params: list[str]
    query_params: list[str]
    body: dict[str, Any] | None  # the request body's schema, resolved; None if none

    def url(self, tenant: str = A, **values: str) -> str:
        """The operation's URL: path ids as given, else ids that exist in tenant A (so
        that bad queries and bodies reach the handler's own checks), else new ones."""
        url = self.path.replace("{tenant_id}", tenant)
        for name in self.path_params:
            value = values.get(name) or KNOWN.get(name) or str(uuid4())
            url = url.replace("{" + name + "}", value)
        return url

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


@dataclass
class Api:
    url: str
    doc: dict[str, Any]
    operations: list[Operation]
    key_a: dict[str, str]
    key_b: dict[str, str]
    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def api(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("robust")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port):
            url = f"http://127.0.0.1:{port}"
            key_a, key_b = api_headers(url, nats_url, A), api_headers(url, nats_url, B)
            seed(apps, url, key_a)
            doc = httpx.get(f"{url}/schema/openapi.json", timeout=10).json()
            yield Api(url, doc, operations(doc), key_a, key_b)
    finally:
        apps.close()
        KNOWN.clear()


def seed(apps: DomainApps, url: str, key: dict[str, str]) -> None:
    """One of each thing tenant A's API shows, made through the API where it can."""
    with httpx.Client(base_url=f"{url}/api/v1/tenants/{A}", timeout=10, headers=key) as http:
        customer = http.post("/customers", json={"name": "Khách"}).json()["id"]
        ticket = http.post("/tickets", json={"title": "Vé", "kind": "question"}).json()["id"]
    agent = apps.agents.create_user(
        A, "An", "an@robust.vn", "agent", package=Package.CONTACT_CENTER
    )
    conversation = apps.conversations.start(A, Channel.CHAT, UUID(customer))
    apps.conversations.receive_message(A, conversation, "m-1", "Xin chào")
    queue = apps.queues.create(A, "Hỗ trợ", [Channel.CHAT])
    call = apps.calls.start_inbound(
        A, "robust-1", "1900", LegSpec.customer("c-1", "0912345678"), datetime.now(UTC)
    )
    KNOWN.update(
        customer_id=customer,
        ticket_id=ticket,
        agent_id=str(agent),
        author_id=str(agent),
        conversation_id=str(conversation),
        queue_id=str(queue),
        call_id=str(call),
    )


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def operations(doc: dict[str, Any]) -> list[Operation]:
    found = []
    for path, item in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = op.get("parameters", [])
            body = None
            if "requestBody" in op:
                content = op["requestBody"]["content"]
                body = resolve(doc, next(iter(content.values()))["schema"])
            found.append(
                Operation(
                    method,
                    path,
                    [p["name"] for p in params if p["in"] == "path" and p["name"] != "tenant_id"],
                    [p["name"] for p in params if p["in"] == "query"],
                    body,
                )
            )
    return found


def check(
    api: Api,
    http: httpx.Client,
    op: Operation,
    url: str,
    what: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response | None:
    """Send one request; note a failure (a 5xx, or a 4xx without a JSON message)."""
    try:
        answer = http.request(
            op.method.upper(), url, headers=headers, params=params, content=content
        )
    except httpx.HTTPError as e:
        api.failures.append(f"{op} [{what}]: no answer ({e!r})")
        return None
    problem = None
    if answer.status_code >= 500:
        problem = f"{answer.status_code}"
    elif answer.status_code >= 400:
        try:
            detail = answer.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        if not isinstance(detail, str) or not detail:
            problem = f"{answer.status_code} without a JSON message"
    if problem:
        api.failures.append(f"{op} [{what}] {url[:120]}: {problem}: {answer.text[:200]}")
    return answer


def report(api: Api) -> None:
    failures, api.failures[:] = list(api.failures), []
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:40])


def with_body(op: Operation) -> bytes | None:
    """A body for an operation that takes one: an empty object (fields missing)."""
    return b"{}" if op.body is not None else None


def example(doc: dict[str, Any], schema: dict[str, Any], name: str = "") -> Any:
    """A value the schema takes (ids of things tenant A has where a field names one)."""
    schema = resolve(doc, schema)
    if name in KNOWN:
        return KNOWN[name]
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    for options in ("oneOf", "anyOf"):
        if options in schema:
            chosen = [o for o in schema[options] if o.get("type") != "null"]
            return example(doc, chosen[0], name)
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", [])
        properties = schema.get("properties", {})
        return {k: example(doc, v, k) for k, v in properties.items() if k in required}
    if kind == "string":
        return str(uuid4()) if schema.get("format") == "uuid" else "x"
    return {"integer": 1, "number": 1.0, "boolean": False, "array": []}.get(str(kind))


def test_the_document_lists_the_api(api: Api) -> None:
    # What the other tests walk: if the document were empty, they would prove nothing.
    paths = {op.path for op in api.operations}
    assert len(api.operations) >= 15, paths
    assert any(op.body is not None for op in api.operations)
    assert any(op.path_params for op in api.operations)
    assert all(op.path.startswith("/api/v1/tenants/{tenant_id}/") for op in api.operations)


def test_the_example_bodies_are_taken(api: Api) -> None:
    # The body test changes one field of an example at a time: the example itself must
    # pass, or every change would be refused for the wrong reason.
    with httpx.Client(base_url=api.url, timeout=30, headers=api.key_a) as http:
        for op in api.operations:
            if op.body is None:
                continue
            answer = http.request(op.method.upper(), op.url(), json=example(api.doc, op.body))
            assert answer.status_code < 300, (str(op), answer.text)


def test_no_key_another_tenants_key_or_a_bad_tenant_is_a_4xx(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as http:
        for op in api.operations:
            body = with_body(op)
            json_type = {"content-type": "application/json"}
            answer = check(api, http, op, op.url(), "no key", headers=json_type, content=body)
            if answer is not None and answer.status_code != 401:
                api.failures.append(f"{op} [no key]: {answer.status_code}, not 401")
            # A session cookie that is no session (forged, a path, huge) opens nothing.
            for cookie in ("null", "0" * 64, "../../secret.key", "%00", "a" * 5000):
                answer = check(
                    api,
                    http,
                    op,
                    op.url(),
                    f"cookie {cookie[:10]}",
                    headers={"cookie": f"cloudcc_session={cookie}"},
                )
                if answer is not None and answer.status_code != 401:
                    api.failures.append(f"{op} [cookie {cookie[:10]}]: {answer.status_code}")
            for bogus in ("Bearer nope", "Bearer cc.x.y", "Basic YTpi", "Bearer " + "a" * 10000):
                check(
                    api,
                    http,
                    op,
                    op.url(),
                    f"bad key {bogus[:12]}",
                    headers={"authorization": bogus},
                )
            answer = check(
                api, http, op, op.url(), "B's key", headers={**api.key_b, **json_type}, content=body
            )
            if answer is not None and answer.status_code != 403:
                api.failures.append(f"{op} [B's key at A]: {answer.status_code}, not 403")
            for tenant in BAD_TENANTS:
                check(
                    api,
                    http,
                    op,
                    op.url(tenant),
                    f"tenant {tenant[:20]}",
                    headers={**api.key_a, **json_type},
                    content=body,
                )
    report(api)


def test_bad_path_ids_are_a_4xx(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=30, headers=api.key_a) as http:
        for op in api.operations:
            for name in op.path_params:
                for value in BAD_PATH_VALUES:
                    check(
                        api,
                        http,
                        op,
                        op.url(**{name: value}),
                        f"{name}={value[:20]}",
                        headers={"content-type": "application/json"},
                        content=with_body(op),
                    )
    report(api)


def test_wrong_query_values_are_a_4xx(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=30, headers=api.key_a) as http:
        for op in api.operations:
            for name in op.query_params:
                for value in BAD_QUERY_VALUES:
                    check(api, http, op, op.url(), f"{name}={value[:20]!r}", params={name: value})
            # All at once, and parameters the operation does not have.
            for value in ("-1", "x" * 5000, "99999999999999999999999"):
                everything = {name: value for name in op.query_params}
                check(api, http, op, op.url(), f"all={value[:10]}", params=everything)
            check(api, http, op, op.url(), "unknown param", params={"zzz": "1", "limit[]": "2"})
            # A parameter given twice.
            twice = "&".join(f"{name}=1&{name}=2" for name in op.query_params)
            if twice:
                check(api, http, op, f"{op.url()}?{twice}", "twice")
    report(api)


def test_broken_and_wrongly_typed_bodies_are_a_4xx(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=60, headers=api.key_a) as http:
        for op in api.operations:
            if op.body is None:
                continue
            for body, content_type in BAD_BODIES:
                check(
                    api,
                    http,
                    op,
                    op.url(),
                    f"{content_type} {body[:15]!r}",
                    headers={"content-type": content_type},
                    content=body,
                )
            base = example(api.doc, op.body)
            fields = list(resolve(api.doc, op.body).get("properties", {}))
            for name in fields:
                for value in WRONG_FIELD_VALUES:
                    body = json.dumps(base | {name: value}).encode()
                    check(
                        api,
                        http,
                        op,
                        op.url(),
                        f"{name}={json.dumps(value)[:20]}",
                        headers={"content-type": "application/json"},
                        content=body,
                    )
    report(api)


# Characters random text is made of: ASCII, controls, separators, quotes, far Unicode.
ALPHABET = (
    [chr(c) for c in range(0x20, 0x7F)]
    + ["\x01", "\t", "\n", "\x7f", "\u00e0", "\u1ea1", "\u200b", "\ufeff", "\U0001f600"]
    + ["%", "%25", "%00", "%ff", ",", "/", "\\", "'", '"']
)
RANDOM_REQUESTS = 600


def random_text(rng: random.Random) -> str:
    size = rng.choice((0, 1, 5, 36, 100, 1000))
    return "".join(rng.choice(ALPHABET) for _ in range(size))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice((0, -1, 2**31, 2**63, -(2**70), rng.randrange(-1000, 1000)))
    if kind == 3:
        return rng.choice((0.5, -1e308, 1e-300, float(rng.randrange(100))))
    if kind in (4, 5):
        return random_text(rng)
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_text(rng)[:10]: random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_random_ids_query_values_and_bodies_are_never_a_5xx(api: Api) -> None:
    # Seeded: a failure repeats, and the failing request is in the report.
    rng = random.Random(20250303)
    with httpx.Client(base_url=api.url, timeout=30, headers=api.key_a) as http:
        for _ in range(RANDOM_REQUESTS):
            op = rng.choice(api.operations)
            path = {name: quote(random_text(rng) or "x", safe="") for name in op.path_params}
            query = {name: random_text(rng) for name in op.query_params if rng.random() < 0.5}
            body = None
            if op.body is not None:
                fields = list(resolve(api.doc, op.body).get("properties", {}))
                names = [rng.choice(fields) if rng.random() < 0.8 else random_text(rng)[:10]]
                body = json.dumps(
                    {name: random_json(rng) for name in names * rng.randrange(1, 6)}
                ).encode()
            check(
                api,
                http,
                op,
                op.url(**path),
                f"random {query}"[:100],
                headers={"content-type": "application/json"},
                params=query,
                content=body,
            )
    report(api)
