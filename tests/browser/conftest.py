"""A console served on 127.0.0.1 (werkzeug threads, the functions-framework apps) and headless Chromium."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from devstack.task_dispatcher import TaskDispatcher
from shared import bootstrap
from tests.conftest import base_env
from tests.functions.conftest import client_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".local" / "screenshots"
DEV_TOKEN = "browser-test-dev-token-0123456789abcdef"  # CONSOLE_DEV_TOKEN: the URL devstack.run prints carries it


def listening() -> socket.socket:
    """A socket listening on a free 127.0.0.1 port, held until its server takes it over: a port
    picked first and bound later may be taken in between, by any connection's local end (and
    werkzeug then exits the process)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


class Served:
    """One functions-framework app on `sock` (`listening`), in a thread; stopped by `close`."""

    def __init__(self, target: str, sock: socket.socket, signature: str = "http") -> None:
        port = sock.getsockname()[1]
        with sock:  # werkzeug serves a duplicate of its descriptor
            self.server = make_server("127.0.0.1", port, client_for(target, signature).application, threaded=True,
                                      fd=sock.fileno())
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name=target)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()


@pytest.fixture
def stack(monkeypatch, database_url):
    """The console (CONSOLE_AUTH=dev) with the intake, the analytics and email subscribers and the
    dispatcher that pushes messages to them, as in the local stack."""
    socks = {name: listening() for name in ("console", "intake", "analytics", "emails")}
    url = {name: f"http://127.0.0.1:{sock.getsockname()[1]}" for name, sock in socks.items()}
    for key, value in base_env(
        database_url, CONSOLE_AUTH="dev", CONSOLE_SECRET="browser-test-secret", CONSOLE_DEV_TOKEN=DEV_TOKEN,
        LOCAL_SUBSCRIBER_URLS=f"verification-events={url['analytics']}/,customer-emails={url['emails']}/",
        LOCAL_INTAKE_URL=url["intake"], LOCAL_VERIFY_URL=f"{url['console']}/verify",
    ).items():
        monkeypatch.setenv(key, value)
    bootstrap.reset()
    servers, stop = [], threading.Event()
    try:
        servers.append(Served("record_analytics", socks["analytics"], "cloudevent"))
        servers.append(Served("send_customer_email", socks["emails"], "cloudevent"))
        servers.append(Served("webhook_intake", socks["intake"]))
        servers.append(Served("operator_console", socks["console"]))
        # Local Pub/Sub is a queue in PostgreSQL: this pushes its messages to the subscribers.
        dispatcher = TaskDispatcher(bootstrap.container().db, poll_interval=0.1)
        pushing = threading.Thread(target=dispatcher.run_forever, args=(stop,), daemon=True, name="push")
        pushing.start()
        yield url["console"]
    finally:
        stop.set()
        for server in servers:
            server.close()
        for sock in socks.values():  # any a server did not take over (a failure before it)
            sock.close()
        bootstrap.reset()


@pytest.fixture
def browser_page():
    """A page in headless Debian Chromium with a fresh profile, removed afterwards."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="console-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900})
            try:
                page = context.new_page()
                page.set_default_timeout(15_000)
                yield page
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def console_page(stack, browser_page):
    """`browser_page` signed in to the console as a person is: by opening the URL the local stack
    printed, which leaves it on the same page without the token."""
    browser_page.goto(f"{stack}/sessions?dev_token={DEV_TOKEN}")
    assert browser_page.url == f"{stack}/sessions"
    return browser_page


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
