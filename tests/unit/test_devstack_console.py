"""The local stack's console: one readable line per lifecycle step, routine lines left out,
nothing but order ids and kinds in a story line; and its processes from the one list of functions."""

from __future__ import annotations

import io
import json
import logging

import pytest

from devstack.console import Console, render
from devstack.run import FUNCTIONS, SUBSCRIBERS
from shared import log as logctx
from shared.domain.messages import EventMessage
from shared.functions_table import FUNCTIONS as DEPLOYED
from shared.handlers.analytics import story_of, tell


def entry(message: str, logger: str = "functions", severity: str = "INFO", **extra) -> str:
    return json.dumps({"severity": severity, "message": message, "time": "2026-12-02T10:19:07+00:00",
                       "logger": logger, **extra})


def event(type_: str, order_id: str = "demo-1", **data) -> EventMessage:
    return EventMessage(id="e-1", type=type_, order_id=order_id, occurred_at="2026-12-02T10:19:07+00:00", data=data)


def test_story_and_sweep_lines_are_told_and_routine_lines_left_out():
    assert render("record_analytics", entry("order demo-1: link sent", logger="story")).endswith(
        "  order demo-1: link sent")
    assert render("sweep", entry("sweep: expired 1", logger="functions.sweep")).endswith("  sweep: expired 1")
    assert render("record_analytics", entry("handled: counted")) is None
    assert render("webhook_intake", entry("answered 200")) is None
    # The sweep's every-run line for the alerts (functions/sweep.py) stays out of the story.
    assert render("sweep", entry("sweep done: 0 undelivered outbox rows", logger="functions.sweep.metrics")) is None


def test_warnings_and_errors_are_one_line_with_the_exception_class():
    line = render("send_customer_email", entry("transient failure, Pub/Sub will retry", severity="WARNING",
                                               exception='  File "x.py", line 1\nTransientError'))
    assert line.endswith("  send_customer_email: warning: transient failure, Pub/Sub will retry (TransientError)")
    assert "\n" not in line


def test_a_function_s_output_is_rendered_line_by_line():
    out = io.StringIO()
    Console(out).pump("sweep", [entry("answered 200") + "\n", "not json\n"])
    assert out.getvalue() == "sweep: not json\n"


@pytest.mark.parametrize("message, told", [
    (event("order.received"), "order received"),
    (event("customer.email_sent", kind="link", reminder_index=0), "link sent"),
    (event("customer.email_sent", kind="reminder", reminder_index=1), "reminder sent"),
    (event("verification.approved", seconds_to_verify=30), "verified"),
    (event("verification.declined"), "declined"),
    (event("verification.expired"), "expired (deadline passed)"),
    (event("refund.requested", reason="expired"), "refund requested"),
    (event("verification.requested"), None),
    (event("customer.email_sent", kind="not-a-kind"), None),
])
def test_each_lifecycle_step_reads_as_one_phrase(message, told):
    assert story_of(message) == told


def test_a_story_line_holds_the_order_id_and_nothing_of_the_customer(caplog):
    logctx.configure()
    with caplog.at_level(logging.INFO, logger="story"):
        tell(event("verification.approved", order_id="demo-9", date_of_birth="1990-01-01",
                   email="buyer@example.com"))
        tell(event("order.received", order_id="buyer@example.com"))  # not an id: not echoed
    assert [r.getMessage() for r in caplog.records] == ["order demo-9: verified", "order ?: order received"]


def test_the_stack_runs_the_one_list_of_functions_in_its_port_order():
    assert list(FUNCTIONS) == [f.entry_point for f in DEPLOYED]
    assert [offset for _, offset in FUNCTIONS.values()] == list(range(len(DEPLOYED)))
    assert {name: signature for name, (signature, _) in FUNCTIONS.items()} == {
        f.entry_point: f.signature for f in DEPLOYED}
    assert SUBSCRIBERS == {"customer-emails": "send_customer_email", "verification-events": "record_analytics",
                           "order-actions": "request_refund"}


def test_the_stack_gives_each_function_every_secret_the_table_says_it_reads(tmp_path, monkeypatch):
    import devstack.run as run

    monkeypatch.setattr(run, "LOCAL", tmp_path)
    for variable in {s.variable for f in DEPLOYED for s in f.secrets} | {"EMAIL_BACKEND", "REFUND_BACKEND"}:
        monkeypatch.delenv(variable, raising=False)
    env = run._environment(8080, "postgresql+pg8000://postgres@127.0.0.1:1/verification")
    local = {"DB_IAM_AUTH": "true", "EMAIL_BACKEND": env["EMAIL_BACKEND"], "REFUND_BACKEND": env["REFUND_BACKEND"],
             "LIGHTSPEED_ENABLED": "true",  # and every store: the stack runs their stand-ins by default
             "SHOPIFY_ENABLED": "true", "WOOCOMMERCE_ENABLED": "true", "OUTCOME_WEBHOOK_ENABLED": "true"}
    for function in DEPLOYED:
        missing = {v for v in function.secret_variables(local) if not env.get(v)}
        assert not missing, f"{function.entry_point} would not start locally without {missing}"


def test_each_run_makes_its_own_console_sign_in_token_and_prints_the_url_with_it(tmp_path, monkeypatch, capsys):
    import devstack.run as run
    from shared.config import ConsoleSettings

    monkeypatch.setattr(run, "LOCAL", tmp_path)
    monkeypatch.delenv("CONSOLE_DEV_TOKEN", raising=False)
    database = "postgresql+pg8000://postgres@127.0.0.1:1/verification"
    first, second = run._environment(8080, database), run._environment(8080, database)
    token = first["CONSOLE_DEV_TOKEN"]
    assert len(token) >= 43 and token != second["CONSOLE_DEV_TOKEN"]  # secrets.token_urlsafe(32), per run
    assert ConsoleSettings.from_env(first).dev_token == token  # what the console then requires
    run._print_banner(8080, first, database, 10)
    assert f"http://127.0.0.1:8086/sessions?dev_token={token}" in capsys.readouterr().out
    monkeypatch.setenv("CONSOLE_DEV_TOKEN", "given-" + "g" * 40)
    assert run._environment(8080, database)["CONSOLE_DEV_TOKEN"] == "given-" + "g" * 40
