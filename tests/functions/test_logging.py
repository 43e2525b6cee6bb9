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
