"""`python -m devstack.send`: posts to the port the running stack left in .local/stack.env,
answers unknown words with one usage line, and a stack that is not running with one line."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from devstack.postgres import free_port
from shared.stores.woocommerce import WooCommerceSource
from tests.stack import ROOT

WOO_SECRET = "w" * 32


@pytest.fixture
def state_dir():
    path = Path(tempfile.mkdtemp(prefix="verification-send-"))
    (path / "dev-secrets.json").write_text(json.dumps({
        "ORDER_WEBHOOK_SECRET": "whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", "VERIFF_SHARED_SECRET": "s" * 32,
        "VERIFF_API_KEY": "k" * 16, "LIGHTSPEED_CLIENT_SECRET": "l" * 32,
        "WOOCOMMERCE_WEBHOOK_SECRET": WOO_SECRET}))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def send(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LOCAL_BASE_PORT"}
    env.update({"LOCAL_STATE_DIR": str(state_dir), "PYTHONPATH": str(ROOT), "NO_GCE_CHECK": "true"})
    return subprocess.run([sys.executable, "-m", "devstack.send", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def intake():
    """A stand-in intake on 127.0.0.1 recording each POST: (path, headers, body)."""
    posts = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append((self.path, dict(self.headers.items()), body))
            body = b'{"status": "accepted"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], posts
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("args", [(), ("bogus", "demo-1"), ("veriff", "demo-1", "maybe"), ("order",),
                                  ("void", "demo-1", "extra", "words"), ("woocommerce", "demo-1", "a@example.com"),
                                  ("woocommerce", "12", "a@example.com", "shipped"), ("woocommerce-cancel",)])
def test_unknown_words_get_one_usage_line(state_dir, args):
    done = send(state_dir, *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("usage: python -m devstack.send order ID EMAIL")
    assert done.stdout == ""


def test_it_posts_to_the_port_the_running_stack_wrote(state_dir, intake):
    port, posts = intake
    (state_dir / "stack.env").write_text(f"LOCAL_INTAKE_URL=http://127.0.0.1:{port}\n")
    done = send(state_dir, "order", "demo-1", "buyer@example.com")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("200 ")
    assert [path for path, _, _ in posts] == ["/webhooks/orders"]


def test_a_stack_that_is_not_running_is_one_line(state_dir):
    port = free_port()  # nothing listens there
    (state_dir / "stack.env").write_text(f"LOCAL_INTAKE_URL=http://127.0.0.1:{port}\n")
    done = send(state_dir, "veriff", "demo-1", "approved")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"devstack.send: the local stack is not running (nothing answers at http://127.0.0.1:{port}); "
        "start it with scripts/run-local.sh"]


@pytest.mark.parametrize("args, topic, status", [
    (("woocommerce", "1001", "buyer@example.com"), "order.created", "processing"),
    (("woocommerce-cancel", "1001"), "order.updated", "cancelled"),
])
def test_woocommerce_webhooks_are_signed_as_woocommerce_signs_them(state_dir, intake, args, topic, status):
    port, posts = intake
    (state_dir / "stack.env").write_text(f"LOCAL_INTAKE_URL=http://127.0.0.1:{port}\n")
    done = send(state_dir, *args)
    assert done.returncode == 0, done.stderr
    [(path, sent, body)] = posts
    headers = {name.lower(): value for name, value in sent.items()}  # urllib re-cases header names
    assert path == "/webhooks/woocommerce" and headers["x-wc-webhook-topic"] == topic
    assert headers["content-type"] == "application/json"
    source = WooCommerceSource(WOO_SECRET)
    delivery = source.verify(headers, body, None)
    assert delivery == headers["x-wc-webhook-delivery-id"]
    command = source.parse(body, delivery, headers)
    assert command.order_id == "woocommerce:1001" and command.event_id == f"1001:{status}"


def test_woocommerce_without_its_dev_secret_says_so_in_one_line(state_dir, intake):
    port, _ = intake
    secrets = json.loads((state_dir / "dev-secrets.json").read_text())
    del secrets["WOOCOMMERCE_WEBHOOK_SECRET"]
    (state_dir / "dev-secrets.json").write_text(json.dumps(secrets))
    (state_dir / "stack.env").write_text(f"LOCAL_INTAKE_URL=http://127.0.0.1:{port}\n")
    done = send(state_dir, "woocommerce", "1001", "buyer@example.com")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "devstack.send: no WOOCOMMERCE_WEBHOOK_SECRET in the dev secrets: restart the stack (scripts/run-local.sh) to add it"]


def test_shopify_sends_a_webhook_the_shopify_source_verifies(state_dir):
    from datetime import datetime, timezone

    from shared.domain.messages import OrderPlaced, StoreCancelled
    from shared.stores.shopify import ShopifySource

    secrets = json.loads((state_dir / "dev-secrets.json").read_text())
    secrets.update({"SHOPIFY_CLIENT_SECRET": "shpss_" + "a" * 32, "SHOPIFY_SHOP_DOMAIN": "dev.myshopify.com"})
    (state_dir / "dev-secrets.json").write_text(json.dumps(secrets))
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (state_dir / "stack.env").write_text(f"LOCAL_INTAKE_URL=http://127.0.0.1:{server.server_address[1]}\n")
        assert send(state_dir, "shopify", "1001", "buyer@example.com").returncode == 0
        assert send(state_dir, "shopify-cancel", "1001").returncode == 0
        assert send(state_dir, "shopify", "demo-1", "buyer@example.com").returncode == 2  # ids are numbers
    finally:
        server.shutdown()
        server.server_close()
    source = ShopifySource("dev.myshopify.com", (secrets["SHOPIFY_CLIENT_SECRET"],))
    commands = [source.parse(body, source.verify(headers, body, datetime.now(timezone.utc)), headers)
                for _, headers, body in received]
    assert [path for path, _, _ in received] == ["/webhooks/shopify", "/webhooks/shopify"]
    assert isinstance(commands[0], OrderPlaced) and commands[0].order_id == "shopify:1001"
    assert commands[0].customer_email == "buyer@example.com"
    assert isinstance(commands[1], StoreCancelled) and commands[1].order_id == "shopify:1001"


def test_a_secrets_file_from_before_shopify_gains_its_secret_and_keeps_the_others(state_dir, monkeypatch):
    from devstack import run

    before = json.loads((state_dir / "dev-secrets.json").read_text())
    monkeypatch.setattr(run, "LOCAL", state_dir)
    values = run._dev_secrets()
    assert {k: values[k] for k in before} == before
    assert values["SHOPIFY_CLIENT_SECRET"].startswith("shpss_") and values["SHOPIFY_SHOP_DOMAIN"].endswith(".myshopify.com")
    assert json.loads((state_dir / "dev-secrets.json").read_text()) == values
