"""The outcome webhook connector over HTTP (DESIGN.md 4b): what it sends, how it signs, and how
each answer is judged (a scripted server records every request)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from shared.config import StoreSettings
from shared.errors import ConfigError
from shared.inbound.orders import verify_standard_webhook
from shared.stores.base import StoreActionKind, StoreOrder, StoreRefused, StoreUnavailable
from shared.stores.outcome_webhook import OutcomeWebhookConnector, notification_type, sign, webhook_id
from tests.fakes.http_server import FakeHttpServer, Reply

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
KEY = b"k" * 32
AT = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)


def connector(url: str, **kwargs) -> OutcomeWebhookConnector:
    stores = StoreSettings.from_env({"OUTCOME_WEBHOOK_URL": url, "OUTCOME_WEBHOOK_SECRET": SECRET})
    made = OutcomeWebhookConnector.from_settings(stores)
    assert made is not None
    return made


def order(key="shopify:1001", reason=None) -> StoreOrder:
    return StoreOrder(key=key, source=key.split(":")[0], store_ref="gid://shopify/Order/1001", reason=reason,
                      occurred_at=AT)


def test_the_standard_webhooks_published_vector():
    # standard-webhooks/standard-webhooks, spec's example (secret, id, timestamp, payload, signature)
    secret = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_signed_body_with_the_store_id_and_no_customer_data_and_a_stable_id():
    with FakeHttpServer(Reply(204), Reply(204)) as server:
        hook = connector(server.url + "/hook")
        result = hook.perform(StoreActionKind.CANCEL_AND_REFUND, order(reason="expired"))
        hook.perform(StoreActionKind.CANCEL_AND_REFUND, order(reason="expired"))
    first, again = server.requests
    assert first.path == "/hook" and first.method == "POST"
    assert first.json() == {"type": "order.expired", "orderId": "1001", "source": "shopify",
                            "occurredAt": "2026-12-01T09:30:00Z"}
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == webhook_id("shopify:1001", "order.expired")
    now = datetime.fromtimestamp(int(first.headers["webhook-timestamp"]), timezone.utc)
    assert verify_standard_webhook(KEY, first.headers, first.body, now) == first.headers["webhook-id"]
    assert result.detail == {"webhook_id": first.headers["webhook-id"], "type": "order.expired"}


@pytest.mark.parametrize("kind,reason,type_", [
    (StoreActionKind.HOLD, None, "order.held"), (StoreActionKind.RELEASE, None, "order.verified"),
    (StoreActionKind.CANCEL_AND_REFUND, "expired", "order.expired"),
    (StoreActionKind.CANCEL_AND_REFUND, "declined", "order.declined"),
    (StoreActionKind.CANCEL_AND_REFUND, "underage", "order.declined"),
    (StoreActionKind.FLAG_FOR_REVIEW, "age_missing", "order.in_review"),
    (StoreActionKind.NOTE_CANCELLED, None, "order.cancelled"),
])
def test_each_action_is_its_notification_type(kind, reason, type_):
    assert notification_type(kind, reason) == type_


def test_answers_are_judged():
    with FakeHttpServer(Reply(409), Reply(429, headers={"Retry-After": "30"}), Reply(503), Reply(401),
                        Reply(404), Reply(400), Reply(422)) as server:
        hook = connector(server.url)
        assert hook.perform(StoreActionKind.HOLD, order()).already is True
        with pytest.raises(StoreUnavailable) as throttled:
            hook.perform(StoreActionKind.HOLD, order())
        assert throttled.value.retry_after == 30
        for _ in range(3):  # 503, 401 (our secret rotated there), 404 (the receiver's URL)
            with pytest.raises(StoreUnavailable):
                hook.perform(StoreActionKind.HOLD, order())
        for code in ("http_400", "http_422"):
            with pytest.raises(StoreRefused) as refused:
                hook.perform(StoreActionKind.HOLD, order())
            assert refused.value.store_code == code


def test_no_answer_is_unavailable_and_a_missing_secret_is_a_config_error():
    hook = OutcomeWebhookConnector("http://127.0.0.1:9/hook", KEY, timeout=1)
    with pytest.raises(StoreUnavailable):
        hook.perform(StoreActionKind.HOLD, order())
    unsigned = OutcomeWebhookConnector.from_settings(StoreSettings.from_env({"OUTCOME_WEBHOOK_URL": "http://127.0.0.1:9/"}))
    with pytest.raises(ConfigError):
        unsigned.perform(StoreActionKind.HOLD, order())
    assert OutcomeWebhookConnector.from_settings(StoreSettings.from_env({})) is None


def test_the_url_must_be_https_or_this_machine():
    with pytest.raises(ConfigError):
        StoreSettings.from_env({"OUTCOME_WEBHOOK_URL": "http://example.com/hook", "OUTCOME_WEBHOOK_SECRET": SECRET})
