"""Reply templates: placeholder checks on write, and a render that never fails."""

from __future__ import annotations

import pytest

from domain.base import NotFound
from domain.templates import (
    InvalidTemplate,
    Language,
    ReplyTemplates,
    TemplateArchived,
    placeholders,
    render,
)
from domain.vocabulary import Channel

TENANT = "acme"
GREETING = "Xin chào {{customer.name}}, em là {{ agent.name }} từ {{tenant.name}}."


@pytest.fixture
def templates(transcoder_env: dict[str, str]) -> ReplyTemplates:
    return ReplyTemplates(env=transcoder_env)


# render()


def test_render_fills_placeholders_from_a_nested_context() -> None:
    context = {"customer": {"name": "Lan"}, "agent": {"name": "Minh"}, "tenant": {"name": "Acme"}}
    assert render(GREETING, context) == "Xin chào Lan, em là Minh từ Acme."


def test_render_accepts_flat_dotted_keys() -> None:
    context = {"customer.name": "Lan", "agent.name": "Minh", "tenant.name": "Acme"}
    assert render(GREETING, context) == "Xin chào Lan, em là Minh từ Acme."


def test_render_never_raises_on_missing_values() -> None:
    assert render(GREETING, {"customer": {"name": None}}) == "Xin chào , em là  từ ."
    assert render("Hi {{customer.name}}", {"customer": "not a mapping"}) == "Hi "
    assert render("Hi {{customer}}", {"customer": {"name": "Lan"}}) == "Hi "


def test_render_escapes_nothing_because_channels_escape() -> None:
    body = "Dear {{customer.name}}"
    assert render(body, {"customer": {"name": "<b>Lan & Co</b>"}}) == "Dear <b>Lan & Co</b>"


def test_render_writes_numbers_as_text() -> None:
    assert render("Ticket #{{ticket.number}}", {"ticket": {"number": 1042}}) == "Ticket #1042"


def test_placeholders_are_listed_once_in_order() -> None:
    body = "{{agent.name}} {{customer.name}} {{agent.name}}"
    assert placeholders(body) == ["agent.name", "customer.name"]


# The template


def test_a_template_is_rendered_for_a_customer(templates: ReplyTemplates) -> None:
    template_id = templates.create(
        TENANT, "Greeting", [Channel.CHAT, Channel.MESSENGER], Language.VI, GREETING
    )
    context = {"customer": {"name": "Lan"}, "agent": {"name": "Minh"}}
    assert templates.render(TENANT, template_id, context) == "Xin chào Lan, em là Minh từ ."
    template = templates.get(TENANT, template_id)
    assert template["channels"] == ["chat", "messenger"]
    assert template["language"] == "vi"
    assert template["placeholders"] == ["customer.name", "agent.name", "tenant.name"]


def test_unknown_placeholders_are_refused(templates: ReplyTemplates) -> None:
    with pytest.raises(InvalidTemplate, match="customer.nmae"):
        templates.create(TENANT, "Typo", [Channel.SMS], Language.EN, "Hi {{customer.nmae}}")


@pytest.mark.parametrize("body", ["Hi {{customer.name}", "Hi {{customer.name", "Hi }}", "{{}}"])
def test_unclosed_or_empty_placeholders_are_refused(templates: ReplyTemplates, body: str) -> None:
    with pytest.raises(InvalidTemplate):
        templates.create(TENANT, "Broken", [Channel.SMS], Language.EN, body)


def test_a_template_is_offered_on_at_least_one_channel(templates: ReplyTemplates) -> None:
    with pytest.raises(InvalidTemplate):
        templates.create(TENANT, "Nowhere", [], Language.EN, "Hello")


def test_only_vietnamese_and_english_are_template_languages(templates: ReplyTemplates) -> None:
    with pytest.raises(InvalidTemplate):
        templates.create(TENANT, "Bonjour", [Channel.EMAIL], "fr", "Bonjour")  # type: ignore[arg-type]


def test_rewriting_checks_the_new_body(templates: ReplyTemplates) -> None:
    template_id = templates.create(TENANT, "Thanks", [Channel.EMAIL], Language.EN, "Thanks!")
    templates.rewrite(TENANT, template_id, "Thanks, {{customer.name}}. Ticket {{ticket.number}}")
    with pytest.raises(InvalidTemplate):
        templates.rewrite(TENANT, template_id, "Thanks {{customer.password}}")
    assert templates.get(TENANT, template_id)["body"].endswith("{{ticket.number}}")


def test_unchanged_edits_record_nothing(templates: ReplyTemplates) -> None:
    template_id = templates.create(TENANT, "Thanks", [Channel.EMAIL], Language.EN, "Thanks!")
    templates.rename(TENANT, template_id, " Thanks ")
    templates.rewrite(TENANT, template_id, "Thanks!")
    templates.change_channels(TENANT, template_id, [Channel.EMAIL])
    templates.change_language(TENANT, template_id, Language.EN)
    assert templates.get(TENANT, template_id)["version"] == 1


def test_an_archived_template_changes_no_more(templates: ReplyTemplates) -> None:
    template_id = templates.create(TENANT, "Old", [Channel.SMS], Language.VI, "Cảm ơn")
    templates.archive(TENANT, template_id)
    templates.archive(TENANT, template_id)
    with pytest.raises(TemplateArchived):
        templates.rewrite(TENANT, template_id, "Cảm ơn bạn")
    template = templates.get(TENANT, template_id)
    assert (template["archived"], template["version"]) == (True, 2)


def test_another_tenant_cannot_use_the_template(templates: ReplyTemplates) -> None:
    template_id = templates.create(TENANT, "Greeting", [Channel.CHAT], Language.VI, GREETING)
    with pytest.raises(NotFound):
        templates.render("other", template_id, {})
