"""IVR flows (CC15, AX13): the voice menus a caller walks through before a queue or an agent.

An `IvrFlow` is a graph of nodes edited as a draft and published as numbered versions.
Publishing validates the draft (an entry node, every target exists, every node is
reachable, menus have choices) and freezes it as a `FlowGraph`; the flow keeps every
published version, so a call that started on version 3 finishes on version 3 even if
version 4 is published meanwhile (the Call records the version of each step).

`next_node()` is pure: given a graph, the node the caller is on, the digits they pressed
(None for a timeout) and how many times they have been on this node in a row, it says
which node comes next, the same node again (repeat after invalid input), the node's
fallback once the retries are used up, or None when the call leaves the flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.checks import checked_text, optional_text, str_or_none

DTMF = frozenset("0123456789*#")
MAX_NODES = 200


class InvalidFlow(DomainError):
    """An IVR command or draft the domain does not accept; `problems` lists every reason."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class NotPublished(DomainError):
    """The flow has no published version (or not the one asked for)."""


class NodeKind(StrEnum):
    """What a node does with the caller."""

    PLAYBACK = "playback"  # a greeting or announcement, then `next` (AX13)
    MENU = "menu"  # a prompt, then DTMF choices to other nodes (CC15)
    COLLECT = "collect"  # a prompt, then digits (an order number...), then `next`
    QUEUE = "queue"  # leaves the flow into a queue
    AGENT = "agent"  # leaves the flow to an agent or an extension
    VOICEMAIL = "voicemail"  # leaves the flow to record a message
    HANG_UP = "hang_up"  # leaves the flow by hanging up

    @property
    def leaves_flow(self) -> bool:
        return self in _EXITS

    @property
    def prompts(self) -> bool:
        return self in (NodeKind.PLAYBACK, NodeKind.MENU, NodeKind.COLLECT)


_EXITS = frozenset({NodeKind.QUEUE, NodeKind.AGENT, NodeKind.VOICEMAIL, NodeKind.HANG_UP})


@dataclass(frozen=True)
class Node:
    """One node of a flow. Which fields apply depends on `kind` (see `_node_problems`).

    `prompt` is text to speak, `audio` the name of a recorded prompt; either will do.
    A MENU or COLLECT waits `timeout_seconds` for input and replays itself on a timeout
    or invalid input until `max_attempts` is reached, then goes to `fallback` (or hangs
    up without one).
    """

    node_id: str
    kind: NodeKind
    prompt: str | None = None
    audio: str | None = None
    next: str | None = None
    choices: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int = 5
    max_attempts: int = 3
    fallback: str | None = None
    min_digits: int = 1
    max_digits: int = 1
    queue_id: UUID | None = None
    agent_id: UUID | None = None
    extension: str | None = None

    def targets(self) -> list[str]:
        """Every node id this node can lead to."""
        targets = [*self.choices.values(), self.next, self.fallback]
        return [t for t in targets if t is not None]

    def to_event(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "kind": NodeKind(self.kind).value,
            "prompt": self.prompt,
            "audio": self.audio,
            "next": self.next,
            "choices": dict(self.choices),
            "timeout_seconds": self.timeout_seconds,
            "max_attempts": self.max_attempts,
            "fallback": self.fallback,
            "min_digits": self.min_digits,
            "max_digits": self.max_digits,
            "queue_id": self.queue_id,
            "agent_id": self.agent_id,
            "extension": self.extension,
        }

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> Node:
        return cls(**{**data, "kind": NodeKind(data["kind"]), "choices": dict(data["choices"])})


@dataclass(frozen=True)
class FlowGraph:
    """A published, validated version of a flow: what a running call walks through."""

    flow_id: UUID
    version: int
    entry: str
    nodes: Mapping[str, Node]

    def node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise InvalidFlow(f"no node {node_id} in version {self.version}") from None


def next_node(flow: FlowGraph, node_id: str, digits: str | None, attempt: int = 1) -> str | None:
    """Where the caller goes from `node_id`, given what they pressed on their `attempt`-th try.

    Returns the same node to replay it, another node, or None when the call leaves the
    flow (an exit node, or retries used up with no fallback).
    """
    node = flow.node(node_id)
    if node.kind.leaves_flow:
        return None
    if node.kind is NodeKind.PLAYBACK:
        return node.next
    if node.kind is NodeKind.MENU and digits is not None and digits in node.choices:
        return node.choices[digits]
    if node.kind is NodeKind.COLLECT and _collected(node, digits):
        return node.next
    # A timeout or invalid input: replay the node, then give up to its fallback.
    return node_id if attempt < node.max_attempts else node.fallback


def _collected(node: Node, digits: str | None) -> bool:
    return (
        digits is not None
        and node.min_digits <= len(digits) <= node.max_digits
        and set(digits) <= DTMF
    )


class IvrFlow(TenantAggregate):
    """A tenant's IVR flow: a draft being edited and every version published so far."""

    class Drafted(TenantAggregate.Created):
        tenant_id: str
        name: str

    class Renamed(TenantAggregate.Event):
        name: str

    class NodeSet(TenantAggregate.Event):
        node: dict[str, Any]

    class NodeRemoved(TenantAggregate.Event):
        node_id: str

    class EntrySet(TenantAggregate.Event):
        node_id: str

    class Published(TenantAggregate.Event):
        flow_version: int

    @event(Drafted)
    def __init__(self, tenant_id: str, name: str) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.nodes: dict[str, Node] = {}
        self.entry: str | None = None
        self.published: dict[int, FlowGraph] = {}
        self.draft_changed = True

    @classmethod
    def draft(cls, tenant_id: str, name: str) -> IvrFlow:
        return cls(tenant_id=tenant_id, name=checked_text(name, "a flow name", 100, InvalidFlow))

    @event(Renamed)
    def _rename(self, name: str) -> None:
        self.name = name

    @event(NodeSet)
    def _set_node(self, node: dict[str, Any]) -> None:
        checked = Node.from_event(node)
        self.nodes[checked.node_id] = checked
        self.draft_changed = True

    @event(NodeRemoved)
    def _remove_node(self, node_id: str) -> None:
        del self.nodes[node_id]
        if self.entry == node_id:
            self.entry = None
        self.draft_changed = True

    @event(EntrySet)
    def _set_entry(self, node_id: str) -> None:
        self.entry = node_id
        self.draft_changed = True

    @event(Published)
    def _publish(self, flow_version: int) -> None:
        assert self.entry is not None  # validated before the event
        self.published[flow_version] = FlowGraph(
            self.id, flow_version, self.entry, dict(self.nodes)
        )
        self.draft_changed = False

    def rename(self, name: str) -> None:
        name = checked_text(name, "a flow name", 100, InvalidFlow)
        if name != self.name:
            self._rename(name)

    def set_node(self, node: Node) -> None:
        """Adds or replaces a node in the draft; the node must make sense on its own."""
        node = _valid_node(node)
        if node.node_id not in self.nodes and len(self.nodes) >= MAX_NODES:
            raise InvalidFlow(f"a flow has at most {MAX_NODES} nodes")
        if self.nodes.get(node.node_id) != node:
            self._set_node(node.to_event())

    def remove_node(self, node_id: str) -> None:
        if node_id in self.nodes:
            self._remove_node(node_id)

    def set_entry(self, node_id: str) -> None:
        if node_id not in self.nodes:
            raise InvalidFlow(f"no node {node_id} in the draft")
        if node_id != self.entry:
            self._set_entry(node_id)

    def publish(self) -> int:
        """Validates the whole draft and freezes it as the next version; returns the version.

        Publishing an unchanged draft returns the current version and records nothing.
        """
        if not self.draft_changed and self.published:
            return self.latest_version
        problems = self.problems()
        if problems:
            raise InvalidFlow(f"the draft cannot be published: {problems[0]}", problems)
        self._publish(flow_version=len(self.published) + 1)
        return self.latest_version

    def problems(self) -> list[str]:
        """Everything that stops the draft from being published, in a stable order."""
        problems: list[str] = []
        if self.entry is None:
            return ["the flow has no entry node"]
        for node in self.nodes.values():
            problems += [
                f"node {node.node_id} leads to missing node {target}"
                for target in node.targets()
                if target not in self.nodes
            ]
        reachable = _reachable(self.nodes, self.entry)
        problems += [
            f"node {node_id} cannot be reached from {self.entry}"
            for node_id in self.nodes
            if node_id not in reachable
        ]
        return problems

    @property
    def latest_version(self) -> int:
        return max(self.published, default=0)

    def graph(self, flow_version: int | None = None) -> FlowGraph:
        """A published version (the latest by default), as calls walk it."""
        wanted = self.latest_version if flow_version is None else flow_version
        graph = self.published.get(wanted)
        if graph is None:
            raise NotPublished(f"flow {self.id} has no published version {wanted or ''}".strip())
        return graph


def _reachable(nodes: Mapping[str, Node], entry: str) -> set[str]:
    seen, todo = set(), [entry]
    while todo:
        node_id = todo.pop()
        if node_id in seen or node_id not in nodes:
            continue
        seen.add(node_id)
        todo.extend(nodes[node_id].targets())
    return seen


def _valid_node(node: Node) -> Node:
    node = Node(
        **{
            **node.to_event(),
            "node_id": checked_text(node.node_id, "a node id", 64, InvalidFlow),
            "kind": NodeKind(node.kind),
            "prompt": optional_text(node.prompt, "a prompt", 2000, InvalidFlow),
            "audio": optional_text(node.audio, "an audio name", 200, InvalidFlow),
            "extension": optional_text(node.extension, "an extension", 64, InvalidFlow),
            "choices": {k.strip(): v for k, v in node.choices.items()},
        }
    )
    problems = _node_problems(node)
    if problems:
        raise InvalidFlow(f"node {node.node_id}: {problems[0]}", problems)
    return node


def _node_problems(node: Node) -> list[str]:
    """What is wrong with a node on its own; what it points at is checked on publish."""
    kind, problems = node.kind, []
    if kind.prompts and node.prompt is None and node.audio is None:
        problems.append("needs a prompt text or an audio name")
    if kind in (NodeKind.PLAYBACK, NodeKind.COLLECT) and node.next is None:
        problems.append(f"a {kind.value} node needs a next node")
    if kind is not NodeKind.MENU and node.choices:
        problems.append("only a menu has choices")
    if kind is NodeKind.MENU:
        if not node.choices:
            problems.append("a menu needs at least one choice")
        if node.next is not None:
            problems.append("a menu goes on by its choices, not next")
        problems += [f"choice {k!r} is not one DTMF key" for k in node.choices if k not in DTMF]
    if kind in (NodeKind.MENU, NodeKind.COLLECT):
        if not 1 <= node.timeout_seconds <= 60:
            problems.append("waits 1 to 60 seconds for input")
        if not 1 <= node.max_attempts <= 10:
            problems.append("allows 1 to 10 attempts")
    elif node.fallback is not None:
        problems.append("only menus and digit collection have a fallback")
    if kind is NodeKind.COLLECT and not 1 <= node.min_digits <= node.max_digits <= 32:
        problems.append("collects 1 to 32 digits, at least min_digits")
    if kind.leaves_flow and node.next is not None:
        problems.append(f"a {kind.value} node leaves the flow and has no next node")
    if (kind is NodeKind.QUEUE) != (node.queue_id is not None):
        problems.append("a queue node, and only it, names a queue")
    names_agent = node.agent_id is not None or node.extension is not None
    if kind is NodeKind.AGENT and (node.agent_id is None) == (node.extension is None):
        problems.append("an agent node names an agent or an extension")
    elif kind is not NodeKind.AGENT and names_agent:
        problems.append("only an agent node names an agent or an extension")
    return problems


class IvrFlows(TenantApplication):
    """The IVR verbs: edit a draft, publish it, and read a version for a running call."""

    name = "ivr_flows"

    def draft(self, tenant_id: str, name: str) -> UUID:
        flow = IvrFlow.draft(tenant_id, name)
        self.save(flow)
        return flow.id

    def rename(self, tenant_id: str, flow_id: UUID, name: str) -> None:
        self.change(tenant_id, flow_id, IvrFlow, lambda f: f.rename(name))

    def set_node(self, tenant_id: str, flow_id: UUID, node: Node) -> None:
        self.change(tenant_id, flow_id, IvrFlow, lambda f: f.set_node(node))

    def remove_node(self, tenant_id: str, flow_id: UUID, node_id: str) -> None:
        self.change(tenant_id, flow_id, IvrFlow, lambda f: f.remove_node(node_id))

    def set_entry(self, tenant_id: str, flow_id: UUID, node_id: str) -> None:
        self.change(tenant_id, flow_id, IvrFlow, lambda f: f.set_entry(node_id))

    def publish(self, tenant_id: str, flow_id: UUID) -> int:
        return self.change(tenant_id, flow_id, IvrFlow, IvrFlow.publish)

    def graph(self, tenant_id: str, flow_id: UUID, flow_version: int | None = None) -> FlowGraph:
        """A published version (the latest by default) for the IVR runner and `next_node()`."""
        return self.get_owned(tenant_id, flow_id, IvrFlow).graph(flow_version)

    def get(self, tenant_id: str, flow_id: UUID) -> dict[str, Any]:
        flow = self.get_owned(tenant_id, flow_id, IvrFlow)
        return {
            "id": str(flow.id),
            "tenant_id": flow.tenant_id,
            "name": flow.name,
            "entry": flow.entry,
            "nodes": [_node_dict(n) for n in flow.nodes.values()],
            "problems": flow.problems(),
            "published_versions": sorted(flow.published),
            "draft_changed": flow.draft_changed,
            "version": flow.version,
        }


def _node_dict(node: Node) -> dict[str, Any]:
    data = node.to_event()
    for key in ("queue_id", "agent_id"):
        data[key] = str_or_none(data[key])
    return data
