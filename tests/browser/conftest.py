"""Browser tests: Playwright for Python driving Debian's chromium against a live daphne.

The server is daphne in a forked process (channels' DaphneProcess) serving the real ASGI app
(HTTP + websockets) against the test database; its live-event listener LISTENs on the test
database, so events published by any process reach the browser as in production.

Chromium is never downloaded: Playwright drives /usr/bin/chromium (Debian's package). Locally a
missing chromium skips these tests with the reason; under CI (CI=true) it fails them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import partial

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# STACK.md: the flags that make Debian's chromium run headless in containers without network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE_VIEWPORT = {"width": 390, "height": 844}
DESKTOP_VIEWPORT = {"width": 1280, "height": 860}


def chromium_path() -> str | None:
    for candidate in (*CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and os.path.exists(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_chromium() -> str:
    path = chromium_path()
    if path:
        return path
    reason = (
        "chromium is not installed (looked for /usr/bin/chromium); install it with "
        "`apt-get install -y chromium` to run the browser tests"
    )
    if _running_in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class LiveServer:
    url: str
    ws_url: str


# Settings of the served app (applied in the server process only): known webhook secrets, no
# buffer wait, and a fast relay, so what the browser sees does not wait on wall-clock time.
SERVER_SETTINGS = {
    "META_APP_SECRET": "browser-meta-secret",
    "MESSAGE_BUFFER_SECONDS": 0,
    "RELAY_SPACING_SECONDS": 0,
}


def _server_process_setup(database_name: str) -> None:
    # In the forked child: forget the parent's connections (never close them: the socket is
    # shared with the parent), then use the test database everywhere.
    from django.db import connections
    from django.test.utils import override_settings

    override_settings(**SERVER_SETTINGS).enable()
    # asgiref's shared executor may already own a worker thread in the parent (async tests ran
    # first); that thread does not exist after fork, so consumers would wait on it forever.
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import SyncToAsync

    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)

    for conn in connections.all(initialized_only=True):
        conn.connection = None


@pytest.fixture(scope="session")
def live_asgi_server(django_db_setup, django_db_blocker):
    """daphne serving platform_ai.asgi (HTTP + websockets + static files) on a free port."""
    require_chromium()
    from channels.testing.live import make_application
    from daphne.testing import DaphneProcess
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.db import connection

    database_name = connection.settings_dict["NAME"]
    process = DaphneProcess(
        "127.0.0.1",
        partial(make_application, static_wrapper=ASGIStaticFilesHandler),
        setup=partial(_server_process_setup, database_name),
    )
    # The child inherits pytest-django's database blocker: fork it while access is allowed.
    with django_db_blocker.unblock():
        process.start()
    while not process.ready.wait(timeout=1):
        if not process.is_alive():
            raise RuntimeError("daphne test server exited before it was ready")
    port = process.port.value
    yield LiveServer(url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}")
    process.terminate()
    process.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    path = require_chromium()
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        instance = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
    finally:
        playwright.stop()


@pytest.fixture
def browser_context(browser, live_asgi_server, transactional_db, monkeypatch):
    # Playwright's sync API keeps an event loop on this thread; Django's async-safety guard
    # would then refuse the test's own ORM calls. The ORM use here is plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    context = browser.new_context(viewport=DESKTOP_VIEWPORT, base_url=live_asgi_server.url)
    # Upper bounds only (nothing waits for them when things work); generous because CI and this
    # machine share their cores with other work.
    context.set_default_timeout(20_000)
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    yield context
    context.close()


@pytest.fixture
def page(browser_context):
    return browser_context.new_page()


def login(page, username: str, password: str, next_path: str = "/admin/") -> None:
    """Sign in through the admin login form, as a person would."""
    page.goto(f"/admin/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("input[type=submit]")
    page.wait_for_load_state()


def pytest_addoption(parser):
    parser.addoption("--screenshots", action="store_true", default=False,
                     help="write docs/screenshots/*.png (make screenshots)")
