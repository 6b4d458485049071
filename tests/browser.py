"""Headless Chromium for the end-to-end tests: Debian's `chromium` package driven by
Playwright (the `playwright` wheel brings only its driver; no browser is downloaded).

Where there is no /usr/bin/chromium the browser tests are skipped with that reason, except
under CI (`CI` set), where a missing browser is a failure: `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CLOUDCC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# The flags of a closed machine: no first-run work, no calls home (they would be refused
# by the network, many at a time), no GPU.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).parents[1] / "docs" / "screenshots"


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@contextmanager
def chromium() -> Iterator[object]:
    """A Playwright `Browser` on the machine's Chromium, closed at the end."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: object, name: str) -> None:
    """Keep a picture of a main screen in docs/screenshots (only when asked: the suite
    must not rewrite tracked files on every run)."""
    if os.environ.get("CLOUDCC_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
