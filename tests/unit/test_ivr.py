"""IVR flows: node rules, graph validation on publish, versions, and the pure next_node()."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from domain.base import NotFound
from domain.ivr import FlowGraph, InvalidFlow, IvrFlows, Node, NodeKind, NotPublished, next_node

TENANT = "acme"
SALES, SUPPORT = uuid4(), uuid4()


@pytest.fixture
def flows(transcoder_env: dict[str, str]) -> IvrFlows:
    return IvrFlows(env=transcoder_env)


def welcome_flow() -> list[Node]:
    """Greeting → main menu (1 sales, 2 support, 0 operator, 9 order status) → exits."""
    return [
        Node("welcome", NodeKind.PLAYBACK, prompt="Welcome to Acme", next="main"),
        Node(
            "main",
            NodeKind.MENU,
            audio="main-menu.wav",
            choices={"1": "sales", "2": "support", "0": "operator", "9": "order"},
            max_attempts=3,
            fallback="operator",
        ),
        Node("sales", NodeKind.QUEUE, queue_id=SALES),
        Node("support", NodeKind.QUEUE, queue_id=SUPPORT),
        Node("operator", NodeKind.AGENT, extension="100"),
        Node(
            "order",
            NodeKind.COLLECT,
            prompt="Type your order number, then #",
            min_digits=6,
            max_digits=8,
            next="support",
            max_attempts=2,
            fallback="bye",
        ),
        Node("bye", NodeKind.HANG_UP),
    ]


def published(flows: IvrFlows, nodes: list[Node] | None = None) -> UUID:
    flow_id = flows.draft(TENANT, "Main line")
    for node in nodes or welcome_flow():
        flows.set_node(TENANT, flow_id, node)
    flows.set_entry(TENANT, flow_id, "welcome")
    flows.publish(TENANT, flow_id)
    return flow_id


@pytest.fixture
def graph(flows: IvrFlows) -> FlowGraph:
    return flows.graph(TENANT, published(flows))


# next_node()


def test_a_greeting_plays_then_goes_on(graph: FlowGraph) -> None:
    assert next_node(graph, "welcome", None) == "main"


def test_a_menu_follows_the_key_pressed(graph: FlowGraph) -> None:
    assert next_node(graph, "main", "1") == "sales"
    assert next_node(graph, "main", "2") == "support"


def test_invalid_input_repeats_the_menu_up_to_its_attempts_then_falls_back(
    graph: FlowGraph,
) -> None:
    assert next_node(graph, "main", "7", attempt=1) == "main"
    assert next_node(graph, "main", None, attempt=2) == "main"  # timeout
    assert next_node(graph, "main", "7", attempt=3) == "operator"


def test_collecting_digits_checks_their_length(graph: FlowGraph) -> None:
    assert next_node(graph, "order", "1234567") == "support"
    assert next_node(graph, "order", "123", attempt=1) == "order"
    assert next_node(graph, "order", "123", attempt=2) == "bye"


def test_exit_nodes_leave_the_flow(graph: FlowGraph) -> None:
    for node_id in ("sales", "operator", "bye"):
        assert next_node(graph, node_id, "1") is None


def test_a_menu_without_a_fallback_hangs_up_after_its_attempts(flows: IvrFlows) -> None:
    nodes = [
        Node("welcome", NodeKind.MENU, prompt="Press 1", choices={"1": "sales"}, max_attempts=1),
        Node("sales", NodeKind.QUEUE, queue_id=SALES),
    ]
    graph = flows.graph(TENANT, published(flows, nodes))
    assert next_node(graph, "welcome", "5") is None


def test_an_unknown_node_is_refused(graph: FlowGraph) -> None:
    with pytest.raises(InvalidFlow):
        next_node(graph, "nowhere", None)


# Nodes on their own


@pytest.mark.parametrize(
    "node",
    [
        Node("m", NodeKind.MENU, prompt="Choose"),  # no choices
        Node("m", NodeKind.MENU, prompt="Choose", choices={"12": "x"}),  # not one key
        Node("m", NodeKind.MENU, choices={"1": "x"}),  # nothing to say
        Node("p", NodeKind.PLAYBACK, prompt="Hello"),  # nowhere to go
        Node("q", NodeKind.QUEUE),  # which queue?
        Node("q", NodeKind.QUEUE, queue_id=SALES, next="x"),  # exits have no next
        Node("a", NodeKind.AGENT),  # which agent?
        Node("a", NodeKind.AGENT, agent_id=uuid4(), extension="100"),  # both
        Node("h", NodeKind.HANG_UP, fallback="x"),
        Node("c", NodeKind.COLLECT, prompt="Digits", next="x", min_digits=5, max_digits=4),
        Node("m", NodeKind.MENU, prompt="Choose", choices={"1": "x"}, timeout_seconds=0),
        Node(" ", NodeKind.HANG_UP),
    ],
)
def test_nodes_that_make_no_sense_are_refused(flows: IvrFlows, node: Node) -> None:
    flow_id = flows.draft(TENANT, "Main line")
    with pytest.raises(InvalidFlow):
        flows.set_node(TENANT, flow_id, node)


def test_the_entry_must_be_a_node_of_the_draft(flows: IvrFlows) -> None:
    flow_id = flows.draft(TENANT, "Main line")
    with pytest.raises(InvalidFlow):
        flows.set_entry(TENANT, flow_id, "welcome")


# Publishing validates the graph


def test_publish_refuses_a_flow_without_an_entry(flows: IvrFlows) -> None:
    flow_id = flows.draft(TENANT, "Main line")
    flows.set_node(TENANT, flow_id, Node("bye", NodeKind.HANG_UP))
    with pytest.raises(InvalidFlow, match="entry"):
        flows.publish(TENANT, flow_id)


def test_publish_refuses_targets_that_do_not_exist(flows: IvrFlows) -> None:
    flow_id = flows.draft(TENANT, "Main line")
    flows.set_node(
        TENANT, flow_id, Node("main", NodeKind.MENU, prompt="Hi", choices={"1": "sales"})
    )
    flows.set_entry(TENANT, flow_id, "main")
    with pytest.raises(InvalidFlow) as refused:
        flows.publish(TENANT, flow_id)
    assert refused.value.problems == ["node main leads to missing node sales"]


def test_publish_refuses_nodes_nobody_can_reach(flows: IvrFlows) -> None:
    nodes = [*welcome_flow(), Node("orphan", NodeKind.VOICEMAIL)]
    flow_id = flows.draft(TENANT, "Main line")
    for node in nodes:
        flows.set_node(TENANT, flow_id, node)
    flows.set_entry(TENANT, flow_id, "welcome")
    with pytest.raises(InvalidFlow) as refused:
        flows.publish(TENANT, flow_id)
    assert refused.value.problems == ["node orphan cannot be reached from welcome"]
    assert flows.get(TENANT, flow_id)["problems"] == refused.value.problems


def test_menus_may_loop_back(flows: IvrFlows) -> None:
    nodes = [
        Node("welcome", NodeKind.MENU, prompt="1 hours, 2 sales", choices={"1": "hours", "2": "s"}),
        Node("hours", NodeKind.PLAYBACK, prompt="We open at 8", next="welcome"),
        Node("s", NodeKind.QUEUE, queue_id=SALES),
    ]
    graph = flows.graph(TENANT, published(flows, nodes))
    assert next_node(graph, "hours", None) == "welcome"


def test_removing_the_entry_node_leaves_the_draft_without_an_entry(flows: IvrFlows) -> None:
    flow_id = published(flows)
    flows.remove_node(TENANT, flow_id, "welcome")
    assert flows.get(TENANT, flow_id)["entry"] is None
    with pytest.raises(InvalidFlow):
        flows.publish(TENANT, flow_id)


# Versions


def test_a_running_call_keeps_the_version_it_started_with(flows: IvrFlows) -> None:
    flow_id = published(flows)
    flows.set_node(
        TENANT, flow_id, Node("welcome", NodeKind.PLAYBACK, prompt="New greeting", next="bye")
    )
    flows.remove_node(TENANT, flow_id, "main")
    for orphan in ("sales", "support", "operator", "order"):
        flows.remove_node(TENANT, flow_id, orphan)
    assert flows.publish(TENANT, flow_id) == 2
    old, new = flows.graph(TENANT, flow_id, 1), flows.graph(TENANT, flow_id, 2)
    assert next_node(old, "welcome", None) == "main"
    assert next_node(new, "welcome", None) == "bye"
    assert flows.graph(TENANT, flow_id) == new
    assert (old.version, old.flow_id) == (1, flow_id)


def test_publishing_an_unchanged_draft_keeps_the_version(flows: IvrFlows) -> None:
    flow_id = published(flows)
    before = flows.get(TENANT, flow_id)["version"]
    assert flows.publish(TENANT, flow_id) == 1
    flows.set_node(TENANT, flow_id, welcome_flow()[0])  # the same node again
    assert flows.publish(TENANT, flow_id) == 1
    assert flows.get(TENANT, flow_id)["version"] == before


def test_editing_the_draft_does_not_change_the_published_version(flows: IvrFlows) -> None:
    flow_id = published(flows)
    flows.set_node(TENANT, flow_id, Node("main", NodeKind.MENU, prompt="x", choices={"1": "zz"}))
    assert next_node(flows.graph(TENANT, flow_id), "main", "1") == "sales"
    assert flows.get(TENANT, flow_id)["draft_changed"] is True


def test_a_flow_never_published_has_no_version(flows: IvrFlows) -> None:
    flow_id = flows.draft(TENANT, "Main line")
    with pytest.raises(NotPublished):
        flows.graph(TENANT, flow_id)
    published_id = published(flows)
    with pytest.raises(NotPublished):
        flows.graph(TENANT, published_id, 2)


def test_another_tenant_cannot_read_the_flow(flows: IvrFlows) -> None:
    flow_id = published(flows)
    with pytest.raises(NotFound):
        flows.graph("other", flow_id)
