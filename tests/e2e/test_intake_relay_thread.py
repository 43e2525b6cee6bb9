"""The intake's relay thread under a real stop: `functions-framework --target=webhook_intake`
answers a burst of orders while its relay thread is held (the local task queue locked by
this test), then gets SIGTERM, as Cloud Run sends its container when scaling in. The worker
must not exit before relaying what it answered: every outbox row of the burst is delivered
once the queue is free, before the process is gone."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text

from tests.conftest import base_env
from tests.functions.test_webhook_intake import order_request

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIBERS = ("verification-events=http://127.0.0.1:9/e,customer-emails=http://127.0.0.1:9/m,"
               "order-actions=http://127.0.0.1:9/a")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(port: int, order_id: str) -> int:
    body, headers = order_request(order_id)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/webhooks/orders", body=body, headers={**headers, "Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def undelivered(db, order_ids: list[str]) -> int:
    with db.read() as conn:
        return conn.execute(text("SELECT count(*) FROM outbox WHERE order_id = ANY(:o) AND delivered_at IS NULL"),
                            {"o": order_ids}).scalar_one()


def test_sigterm_relays_what_was_answered_before_the_worker_exits(database_url, db, tmp_path, order_id):
    port = free_port()
    env = {**os.environ, **base_env(database_url, LOCAL_SUBSCRIBER_URLS=SUBSCRIBERS), "NO_GCE_CHECK": "true",
           "FUNCTION_TARGET": "webhook_intake", "LOG_LEVEL": "WARNING", "XDG_RUNTIME_DIR": str(tmp_path)}
    cli = Path(sys.executable).with_name("functions-framework")
    log = (tmp_path / "intake.log").open("wb")
    process = subprocess.Popen([str(cli), "--target=webhook_intake", "--source=main.py", "--host=127.0.0.1",
                                f"--port={port}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    order_ids = [f"{order_id}-{n}" for n in range(60)]
    lock_held, release = threading.Event(), threading.Event()

    def hold_the_task_queue() -> None:
        # The relay's task insert waits behind this lock; the intake's own statement does not
        # touch local_tasks, so orders are still answered.
        with db.transaction() as conn:
            conn.execute(text("LOCK TABLE local_tasks IN SHARE ROW EXCLUSIVE MODE"))
            lock_held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_task_queue)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the intake did not start"
                time.sleep(0.05)
        holder.start()
        assert lock_held.wait(10)
        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(lambda o: post(port, o), order_ids)) == {200}
        assert undelivered(db, order_ids) == 5 * len(order_ids)  # answered; the relay is held

        process.send_signal(signal.SIGTERM)  # to functions-framework itself, as Cloud Run does
        time.sleep(0.5)
        assert process.poll() is None  # still relaying: it waits for the held pass
        release.set()
        holder.join(10)
        assert process.wait(15) == 0
        assert undelivered(db, order_ids) == 0
    finally:
        release.set()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()
