"""The reply templates read model: a tenant's templates per channel, archived ones out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.apps import DomainApps
from domain.templates import Language
from domain.vocabulary import Channel
from projections.rebuild import compare
from projections.replay import catch_up
from projections.templates import TemplatesReadModel

A, B = "acme", "bravo"


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> Iterator[DomainApps]:
    built = DomainApps.build(transcoder_env)
    yield built
    built.close()


@pytest.fixture
def model(tmp_path: Path) -> TemplatesReadModel:
    return TemplatesReadModel(tmp_path / "templates.sqlite")


def names(rows: list[dict[str, object]]) -> list[object]:
    return [r["name"] for r in rows]


def test_templates_are_offered_per_channel_by_name_and_walled_by_tenant(
    apps: DomainApps, model: TemplatesReadModel, tmp_path: Path
) -> None:
    t = apps.templates
    hello = t.create(A, "chào", [Channel.CHAT, Channel.EMAIL], Language.VI, "Xin chào")
    t.create(A, "Bye", [Channel.CHAT], Language.EN, "Bye {{customer.name}}")
    gone = t.create(A, "Old", [Channel.CHAT], Language.EN, "Old")
    t.archive(A, gone)
    moved = t.create(A, "Sms only", [Channel.SMS], Language.VI, "SMS")
    t.create(B, "Theirs", [Channel.CHAT], Language.VI, "B")
    first = catch_up(model, apps)

    assert names(model.for_channel(A, "chat")) == ["Bye", "chào"]
    assert names(model.for_channel(A, "email")) == ["chào"]
    assert names(model.for_channel(B, "chat")) == ["Theirs"]
    assert model.get(B, hello) is None

    t.rename(A, hello, "Hello")
    t.rewrite(A, hello, "Xin chào {{customer.name}}")
    t.change_language(A, hello, Language.EN)
    t.change_channels(A, moved, [Channel.CHAT])
    first += catch_up(model, apps)
    assert names(model.for_channel(A, "chat")) == ["Bye", "Hello", "Sms only"]
    assert model.for_channel(A, "sms") == []
    got = model.get(A, hello)
    assert got is not None
    assert (got["body"], got["language"], got["channels"]) == (
        "Xin chào {{customer.name}}",
        "en",
        ["chat", "email"],
    )

    rebuilt = TemplatesReadModel(tmp_path / "rebuilt.sqlite")
    assert catch_up(rebuilt, apps) == first
    assert compare(model.connect(), rebuilt.connect()) == []
