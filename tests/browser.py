"""Playwright on Debian's Chromium (browser downloads are not reachable here): the launch flags a closed network
needs, a guard that records and refuses every request that would leave the server, and where screenshots go."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Without the background-networking flags Chromium keeps calling Google's hosts, which this network refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps"]
ARTIFACTS = Path(os.environ.get("TUNEFORGE_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


def chromium_path() -> str | None:
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def launch(playwright):
    executable = chromium_path()
    if executable is None:
        message = "no Chromium on this machine (apt-get install chromium)"
        if os.environ.get("TUNEFORGE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return playwright.chromium.launch(executable_path=executable, args=FLAGS, headless=True)


def guard(context, origin: str) -> list[str]:
    """Every request the context's pages make must go to `origin`; others are refused and listed."""
    outside: list[str] = []

    def handle(route) -> None:
        url = route.request.url
        if url == origin or url.startswith(origin + "/"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", handle)
    return outside


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/")
    form = page.get_by_role("form", name="Sign in")
    form.get_by_label("Username or email").fill(username)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Jobs").wait_for()
