"""The example app in real Chromium, served by a real gunicorn process.

Debian's ``/usr/bin/chromium`` driven by Playwright (no browser download). Outside
CI a machine without it skips these tests; in CI (``CI=true``, or
``KPSESSION_TEST_REQUIRE_BROWSER=1`` as ``.ci/run`` sets) that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import FAST_PASSWORDS, Backend

CHROMIUM = os.environ.get("KPSESSION_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REQUIRE_BROWSER = (
    os.environ.get("KPSESSION_TEST_REQUIRE_BROWSER") == "1"
    or os.environ.get("CI", "").lower() == "true"
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.browser


def _missing_browser() -> str | None:
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        return f"Chromium is not installed at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@dataclass(frozen=True)
class Chrome:
    """A running headless Chromium and Playwright's cookie-less HTTP client."""

    browser: Any
    request: Any


@pytest.fixture(scope="module")
def chrome() -> Iterator[Chrome]:
    """One headless Chromium for the module's tests."""
    problem = _missing_browser()
    if problem is not None:
        if REQUIRE_BROWSER:
            pytest.fail(problem)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield Chrome(browser, playwright.request)
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """The example app under gunicorn on a free local port; yields its base URL."""
    env = {
        **os.environ,
        "SQLALCHEMY_DATABASE_URI": backend.url,
        "FLASK_SECRET_KEY": "browser test secret key, long enough to be real",
        **{f"FLASK_{key}": str(value) for key, value in FAST_PASSWORDS.items()},
    }
    env.pop("DATABASE_URL", None)
    log_path = tmp_path / "gunicorn.log"
    for _ in range(3):
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "1",
                    "--chdir",
                    str(PROJECT_ROOT),
                    "example_app:create_app()",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(base + "/"):
                break
            time.sleep(0.1)
        if process.poll() is None and _answers(base + "/"):
            break
        _stop(process)  # port taken meanwhile, or a failed start: try again
    else:
        pytest.fail("gunicorn did not serve the example app:\n" + log_path.read_text())

    try:
        yield base
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _api_me(chrome: Chrome, base: str, token: str) -> tuple[int, Any]:
    """GET /api/me with a bearer token and no cookies, like an API client."""
    api = chrome.request.new_context(base_url=base)
    try:
        response = api.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        return response.status, response.json()
    finally:
        api.dispose()


def test_register_log_in_profile_log_out_in_chromium(chrome: Chrome, server: str):
    context = chrome.browser.new_context(base_url=server)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto("/register")
        page.fill("#username", "Zoë")
        page.fill("#password", "hopper-1906")
        page.fill("#confirm", "hopper-1906")
        page.click("main button[type=submit]")
        page.wait_for_url("**/login?registered=1")
        assert "Account created" in page.inner_text("p.notice")

        page.fill("#username", "Zoë")
        page.fill("#password", "not the password")
        page.click("main button[type=submit]")
        assert page.inner_text("p.error") == "Invalid username or password."

        # A form whose CSRF secret is gone (cookies cleared) gets a page
        # that says so, not a bare 400.
        context.clear_cookies(name="session")
        page.fill("#password", "hopper-1906")
        with page.expect_navigation() as refused:
            page.click("main button[type=submit]")
        assert refused.value is not None and refused.value.status == 400
        assert page.inner_text("h1") == "This form has expired"
        page.click("text=Open the page again")
        page.wait_for_url("**/login")

        page.fill("#username", "Zoë")
        page.fill("#password", "hopper-1906")
        page.click("main button[type=submit]")
        page.wait_for_url("**/profile")
        assert page.inner_text("#profile-username") == "Zoë"
        assert "kp_session" not in page.evaluate("document.cookie")  # HttpOnly

        cookie = next(c for c in context.cookies() if c["name"] == "kp_session")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"
        assert cookie["path"] == "/"
        token = cookie["value"]
        status, me = _api_me(chrome, server, token)
        assert status == 200
        assert me["username"] == "Zoë"
        assert me["address"] == "127.0.0.1"

        page.click("main button[type=submit]:has-text('Log out')")
        page.wait_for_url(server + "/")
        assert page.is_visible("nav >> text=Log in")
        assert not any(c["name"] == "kp_session" for c in context.cookies())
    finally:
        context.close()

    # The cookie from before the logout no longer works, in a browser or as a
    # bearer token.
    replay = chrome.browser.new_context(base_url=server)
    replay.set_default_timeout(10_000)
    try:
        replay.add_cookies([{"name": "kp_session", "value": token, "url": server}])
        replay_page = replay.new_page()
        replay_page.goto("/profile")
        replay_page.wait_for_url("**/login")
        assert replay_page.inner_text("h1") == "Log in"
        status, body = _api_me(chrome, server, token)
        assert status == 401
        assert body["error"] == "unauthorized"
    finally:
        replay.close()
