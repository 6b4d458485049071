"""The pages speak Vietnamese and English (web.pages.i18n): every string in both."""

from __future__ import annotations

import re
from pathlib import Path

from web.pages.auth import ROLE_LINKS
from web.pages.i18n import MESSAGES, translate

TEMPLATES = Path(__file__).parents[2] / "web" / "templates"


def test_both_languages_have_the_same_keys() -> None:
    vi, en = set(MESSAGES["vi"]), set(MESSAGES["en"])
    assert not vi - en, f"only in Vietnamese: {sorted(vi - en)}"
    assert not en - vi, f"only in English: {sorted(en - vi)}"


def test_every_key_the_pages_use_is_translated() -> None:
    used = {
        key
        for template in TEMPLATES.glob("*.html")
        for key in re.findall(r"""\bt\(\s*["']([\w.]+)["']\s*[,)]""", template.read_text())
    }
    used |= {f"role.{role}" for role in ROLE_LINKS}
    used |= {f"link.{link}" for links in ROLE_LINKS.values() for link in links}
    assert used and not used - set(MESSAGES["en"]), sorted(used - set(MESSAGES["en"]))


def test_a_missing_key_falls_back_to_english_and_an_unknown_one_shows_itself() -> None:
    assert translate("vi", "home.hello", name="An") == "Xin chào An"
    assert translate("en", "home.hello", name="An") == "Hello An"
    assert translate("fr", "signin.title") == "Sign in"
    assert translate("vi", "no.such.key") == "no.such.key"
