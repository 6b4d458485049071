"""Reply templates (CT13): canned replies agents insert, with placeholders filled per customer.

A `ReplyTemplate` has a name, the channels it is offered on, a language (vi or en) and a
body such as ``Xin chào {{customer.name}}, em là {{agent.name}}``. Placeholders are
checked against `PLACEHOLDERS` when the body is written, so a typo is caught by the admin
who made it rather than shown to a customer.

`render()` is pure and never fails on a missing value: an agent mid-conversation gets the
text with a blank rather than an error. It escapes nothing: each channel escapes for its
own medium (HTML for email, nothing for SMS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.checks import checked_enum, checked_text, clean_name, enum_values
from domain.vocabulary import Channel

MAX_BODY = 5000

PLACEHOLDERS = frozenset(
    {
        "customer.name",
        "customer.phone",
        "customer.email",
        "agent.name",
        "agent.email",
        "tenant.name",
        "hotline",
        "ticket.number",
        "ticket.subject",
        "ticket.status",
    }
)
"""The names a template may use; the web room fills them from the conversation at hand."""

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


class Language(StrEnum):
    """A template's language; the brochure's market is Vietnamese and English."""

    VI = "vi"
    EN = "en"


class InvalidTemplate(DomainError):
    """A template command with values the domain does not accept."""


class TemplateArchived(DomainError):
    """An archived template is kept for history and changes no more."""


def placeholders(body: str) -> list[str]:
    """The placeholder names in a body, in order of first use."""
    return list(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(body)))


def render(template: str, context: Mapping[str, Any]) -> str:
    """Fills the template body's placeholders from `context`; a missing value is blank.

    `context` may be nested (``{"customer": {"name": "An"}}``) or flat with dotted keys
    (``{"customer.name": "An"}``).
    """
    return _PLACEHOLDER.sub(lambda m: _lookup(context, m.group(1)), template)


def _lookup(context: Mapping[str, Any], name: str) -> str:
    value: Any = context.get(name)
    if value is None:
        value = context
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None or isinstance(value, Mapping) else str(value)


class ReplyTemplate(TenantAggregate):
    """A tenant's canned reply (CT13)."""

    class Created(TenantAggregate.Created):
        tenant_id: str
        name: str
        channels: list[str]
        language: str
        body: str

    class Renamed(TenantAggregate.Event):
        name: str

    class ChannelsChanged(TenantAggregate.Event):
        channels: list[str]

    class LanguageChanged(TenantAggregate.Event):
        language: str

    class Rewritten(TenantAggregate.Event):
        body: str

    class Archived(TenantAggregate.Event):
        pass

    @event(Created)
    def __init__(
        self, tenant_id: str, name: str, channels: list[str], language: str, body: str
    ) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.channels = frozenset(Channel(c) for c in channels)
        self.language = Language(language)
        self.body = body
        self.archived = False

    @classmethod
    def create(
        cls,
        tenant_id: str,
        name: str,
        channels: Iterable[Channel],
        language: Language,
        body: str,
    ) -> ReplyTemplate:
        return cls(
            tenant_id=tenant_id,
            name=clean_name(name, "a template name", 100, InvalidTemplate),
            channels=_valid_channels(channels),
            language=checked_enum(Language, language, InvalidTemplate).value,
            body=_valid_body(body),
        )

    @event(Renamed)
    def _rename(self, name: str) -> None:
        self.name = name

    @event(ChannelsChanged)
    def _change_channels(self, channels: list[str]) -> None:
        self.channels = frozenset(Channel(c) for c in channels)

    @event(LanguageChanged)
    def _change_language(self, language: str) -> None:
        self.language = Language(language)

    @event(Rewritten)
    def _rewrite(self, body: str) -> None:
        self.body = body

    @event(Archived)
    def _archive(self) -> None:
        self.archived = True

    def rename(self, name: str) -> None:
        self._require_active()
        name = clean_name(name, "a template name", 100, InvalidTemplate)
        if name != self.name:
            self._rename(name)

    def change_channels(self, channels: Iterable[Channel]) -> None:
        self._require_active()
        checked = _valid_channels(channels)
        if frozenset(Channel(c) for c in checked) != self.channels:
            self._change_channels(checked)

    def change_language(self, language: Language) -> None:
        self._require_active()
        checked = checked_enum(Language, language, InvalidTemplate).value
        if checked != self.language:
            self._change_language(checked)

    def rewrite(self, body: str) -> None:
        self._require_active()
        body = _valid_body(body)
        if body != self.body:
            self._rewrite(body)

    def archive(self) -> None:
        if not self.archived:
            self._archive()

    def _require_active(self) -> None:
        if self.archived:
            raise TemplateArchived(f"template {self.name!r} is archived")


def _valid_channels(channels: Iterable[Channel]) -> list[str]:
    checked = enum_values(Channel, channels, InvalidTemplate)
    if not checked:
        raise InvalidTemplate("a template is offered on at least one channel")
    return checked


def _valid_body(body: str) -> str:
    body = checked_text(body, "a template body", MAX_BODY, InvalidTemplate)
    unknown = [name for name in placeholders(body) if name not in PLACEHOLDERS]
    if unknown:
        raise InvalidTemplate(f"unknown placeholders {unknown}; allowed: {sorted(PLACEHOLDERS)}")
    # Braces left over after the placeholders are a placeholder typed wrong: "{{name}".
    rest = _PLACEHOLDER.sub("", body)
    if "{{" in rest or "}}" in rest:
        raise InvalidTemplate("a placeholder is not closed: write {{customer.name}}")
    return body


class ReplyTemplates(TenantApplication):
    """The reply template verbs for admins (CT15) and agents (CT13)."""

    name = "reply_templates"

    def create(
        self,
        tenant_id: str,
        name: str,
        channels: Iterable[Channel],
        language: Language,
        body: str,
    ) -> UUID:
        template = ReplyTemplate.create(tenant_id, name, channels, language, body)
        self.save(template)
        return template.id

    def rename(self, tenant_id: str, template_id: UUID, name: str) -> None:
        self.change(tenant_id, template_id, ReplyTemplate, lambda t: t.rename(name))

    def change_channels(
        self, tenant_id: str, template_id: UUID, channels: Iterable[Channel]
    ) -> None:
        self.change(tenant_id, template_id, ReplyTemplate, lambda t: t.change_channels(channels))

    def change_language(self, tenant_id: str, template_id: UUID, language: Language) -> None:
        self.change(tenant_id, template_id, ReplyTemplate, lambda t: t.change_language(language))

    def rewrite(self, tenant_id: str, template_id: UUID, body: str) -> None:
        self.change(tenant_id, template_id, ReplyTemplate, lambda t: t.rewrite(body))

    def archive(self, tenant_id: str, template_id: UUID) -> None:
        self.change(tenant_id, template_id, ReplyTemplate, ReplyTemplate.archive)

    def render(self, tenant_id: str, template_id: UUID, context: Mapping[str, Any]) -> str:
        return render(self.get_owned(tenant_id, template_id, ReplyTemplate).body, context)

    def get(self, tenant_id: str, template_id: UUID) -> dict[str, Any]:
        template = self.get_owned(tenant_id, template_id, ReplyTemplate)
        return {
            "id": str(template.id),
            "tenant_id": template.tenant_id,
            "name": template.name,
            "channels": sorted(c.value for c in template.channels),
            "language": template.language.value,
            "body": template.body,
            "placeholders": placeholders(template.body),
            "archived": template.archived,
            "version": template.version,
        }
