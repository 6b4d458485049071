"""CLOUDCC_SECURE_COOKIES (deploy.settings): off by default, for the embedded set-up at
http://127.0.0.1; on behind a TLS proxy, where it makes the pages' cookies Secure."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.settings import Settings, SettingsError
from web.pages.auth import csrf_config, session_config


def test_secure_cookies_are_off_unless_asked_for(tmp_path: Path) -> None:
    assert Settings.from_env({"CLOUDCC_DATA": str(tmp_path)}).secure_cookies is False
    env = {"CLOUDCC_DATA": str(tmp_path), "CLOUDCC_SECURE_COOKIES": ""}
    assert Settings.from_env(env).secure_cookies is False


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), ("true", True), ("Yes", True), (" ON ", True)]
    + [("0", False), ("false", False), ("no", False), ("OFF", False)],
)
def test_secure_cookies_read_as_yes_or_no(tmp_path: Path, raw: str, value: bool) -> None:
    env = {"CLOUDCC_DATA": str(tmp_path), "CLOUDCC_SECURE_COOKIES": raw}
    assert Settings.from_env(env).secure_cookies is value


def test_anything_else_is_refused(tmp_path: Path) -> None:
    env = {"CLOUDCC_DATA": str(tmp_path), "CLOUDCC_SECURE_COOKIES": "maybe"}
    with pytest.raises(SettingsError, match="CLOUDCC_SECURE_COOKIES"):
        Settings.from_env(env)


def test_the_setting_makes_the_session_and_csrf_cookies_secure(tmp_path: Path) -> None:
    assert session_config(secure=True).secure and not session_config().secure
    assert csrf_config(tmp_path, secure=True).cookie_secure
    assert not csrf_config(tmp_path).cookie_secure
