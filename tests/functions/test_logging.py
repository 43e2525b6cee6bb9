"""Log lines are Cloud Logging JSON, carry request id and trace, and never a payload, email or secret."""

import json

from tests.conftest import ORDER_SECRET, VERIFF_SECRET
from tests.functions.conftest import client_for
from tests.functions.test_webhook_intake import order_request


def test_intake_logs_identifiers_only(app_env, order_id, captured_logs):
    body, headers = order_request(order_id, customerId="cust-secret-99")
    body = body.replace(b"buyer@example.com", b"very.private.person@example.com")
    body, headers = order_request(order_id, body=body)
    headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers["X-Request-ID"] = "req-log-1"
    client = client_for("webhook_intake")
    assert client.post("/webhooks/orders", data=body, headers=headers,
                       content_type="application/json").status_code == 200
    bad = dict(headers, **{"webhook-signature": "v1,AAAA"})
    assert client.post("/webhooks/orders", data=body, headers=bad,
                       content_type="application/json").status_code == 401
    stream = captured_logs
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines, "the requests logged nothing"
    text = stream.getvalue()
    for secret in ("very.private.person@example.com", "cust-secret-99", ORDER_SECRET, VERIFF_SECRET,
                   body.decode(), headers["webhook-signature"]):
        assert secret not in text
    answered = [line for line in lines if line["message"].startswith("answered")]
    assert len(answered) == 2  # every request ends with one such line, whatever its status
    assert [line["logging.googleapis.com/labels"]["status"] for line in answered] == ["200", "401"]
    for line in answered:
        labels = line["logging.googleapis.com/labels"]
        assert labels["request_id"] == "req-log-1" and labels["function"] == "webhook_intake"
        assert line["logging.googleapis.com/trace"].endswith("0af7651916cd43dd8448eb211c80319c")
        assert line["severity"] in ("INFO", "WARNING")
    assert answered[0]["logging.googleapis.com/labels"]["order_id"] == order_id


def test_one_json_root_handler_under_log_execution_id_and_no_raw_exception_text(app_env, monkeypatch, capsys):
    """LOG_EXECUTION_ID=true makes functions-framework install its own plain root handler
    (dictConfig) as each app is built: ours replaces it, so nothing is written twice and no
    exception message (PostgreSQL's `Failing row contains (... email ...)`) reaches the log."""
    import logging

    import functions_framework

    from shared import bootstrap
    from shared.functions_table import FUNCTIONS
    from shared.log import JsonFormatter
    from tests.functions.conftest import MAIN

    app_env(LOG_EXECUTION_ID="true", CONSOLE_SECRET="c" * 40, CONSOLE_OPERATORS="ops@example.com")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             {name: lg.disabled for name, lg in logging.Logger.manager.loggerDict.items()
              if isinstance(lg, logging.Logger)})

    def ours(handlers):  # pytest's own capture handlers aside
        return [h for h in handlers if not type(h).__module__.startswith("_pytest")]

    try:
        for function in FUNCTIONS:
            functions_framework.create_app(function.entry_point, MAIN, function.signature)
            handlers = ours(root.handlers)
            assert len(handlers) == 1 and isinstance(handlers[0].formatter, JsonFormatter), (function.name, handlers)
            assert not logging.getLogger("functions").disabled

        email = "alice" + "@example.com"  # not on the raising line: the stack quotes source lines

        def fails(*args, **kwargs):
            raise RuntimeError(f"new row violates check constraint: Failing row contains (7, {email})")

        monkeypatch.setattr(bootstrap, "handle", fails)
        client = functions_framework.create_app("timer_expiry", MAIN, "http").test_client()
        response = client.post("/", json={"v": 1, "order_id": "o-log-1", "kind": "deadline", "reminder_index": 0,
                                          "deadline_version": 1})
        assert response.status_code == 500
        captured = capsys.readouterr()
        lines = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
        unhandled = [line for line in lines if line["message"] == "unhandled error"]
        assert len(unhandled) == 1 and "RuntimeError" in unhandled[0]["exception"]
        assert email not in captured.out + captured.err
        # Only the JSON lines: the stack Error Reporting groups by (frames, and the class alone on its
        # last line), never the exception's text or a plain copy of the traceback.
        assert all(line.startswith("{") for line in captured.out.splitlines() if line.strip())
        assert "Traceback" not in captured.err
        assert unhandled[0]["stack_trace"].rstrip().splitlines()[-1] == "RuntimeError"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        for name, disabled in saved[2].items():
            logging.getLogger(name).disabled = disabled
