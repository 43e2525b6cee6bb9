"""SendGrid, Veriff and the refund API adapters against a scripted local HTTP server.

Every base URL points at tests.fakes (127.0.0.1); the real hosts are never contacted.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import pytest
import requests

from shared.adapters.email import SendGridSender
from shared.ports import ProviderSession, RefundResult
from shared.adapters.refunds import HttpRefundGateway, ManualRefundGateway, make_refund_gateway
from shared.providers.veriff.adapter import LocalVerificationProvider, VeriffClient, make_verification_provider
from shared.config import RefundSettings, VeriffSettings
from shared.domain.model import Email
from shared.emails import build_message
from shared.errors import ConfigError, PermanentError, TransientError
from tests.fakes import FakeHttpServer, Reply, refused_url

API_KEY = "SG.test-key"
VERIFF_KEY = "veriff-test-key"
REFUND_TOKEN = "refund-test-token"
CUSTOMER = "customer@example.test"
SHORT_TIMEOUT = 0.2  # only for the "server never answers" tests; nothing asserts on time


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    """requests honours *_PROXY variables; make sure every call goes straight to 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


def _email(order_id: str = "A-1001"):
    return build_message(
        CUSTOMER,
        Email.LINK,
        order_id=order_id,
        verification_url="https://verify.example.test/v/abc",
        deadline=datetime(2026, 12, 3, 13, 0, tzinfo=timezone.utc),
        store_timezone="Europe/Berlin",
    )


# ---- the fake server itself ------------------------------------------------


def test_fake_server_fails_the_test_on_an_unscripted_request():
    with pytest.raises(AssertionError, match="no scripted reply"):
        with FakeHttpServer(Reply(200)) as server:
            requests.post(server.url + "/one", timeout=5)
            requests.post(server.url + "/two", timeout=5)


def test_fake_server_records_requests_and_answers_in_order():
    with FakeHttpServer(Reply(201, {"a": 1}), Reply(503)) as server:
        first = requests.put(server.url + "/x?y=1", data=b"raw", headers={"X-Test": "1"}, timeout=5)
        second = requests.get(server.url + "/z", timeout=5)

    assert (first.status_code, first.json()) == (201, {"a": 1})
    assert second.status_code == 503
    recorded = server.requests
    assert [(r.method, r.path) for r in recorded] == [("PUT", "/x?y=1"), ("GET", "/z")]
    assert recorded[0].headers["x-test"] == "1"
    assert recorded[0].body == b"raw"


# ---- SendGrid ---------------------------------------------------------------


def _sendgrid(url: str, **options) -> SendGridSender:
    return SendGridSender(api_key=API_KEY, sender="Shop Verification <verify@shop.example.test>", base_url=url, **options)


def test_sendgrid_posts_the_documented_mail_send_request():
    message = _email()
    with FakeHttpServer(Reply(202)) as server:
        _sendgrid(server.url).send(message)

    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/v3/mail/send"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "personalizations": [{"to": [{"email": CUSTOMER}]}],
        "from": {"email": "verify@shop.example.test", "name": "Shop Verification"},
        "subject": message.subject,
        "content": [
            {"type": "text/plain", "value": message.text},
            {"type": "text/html", "value": message.html},
        ],
        "headers": {"X-Verification-Email": "link"},
    }


def test_sendgrid_sends_the_message_id_a_repeat_key_gives():
    first, repeat, other = (dataclasses.replace(_email(), repeat_key=key)
                            for key in ("o-1\x00link", "o-1\x00link", "o-2\x00link"))
    with FakeHttpServer(Reply(202), Reply(202), Reply(202)) as server:
        for message in (first, repeat, other):
            _sendgrid(server.url).send(message)

    ids = [request.json()["headers"]["Message-ID"] for request in server.requests]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].endswith("@shop.example.test>") and "o-1" not in ids[0]


@pytest.mark.parametrize("status", [401, 403, 429, 500, 502, 503])
def test_sendgrid_overload_server_and_credential_errors_are_transient(status):
    with FakeHttpServer(Reply(status, {"errors": [{"message": CUSTOMER}]})) as server:
        with pytest.raises(TransientError) as caught:
            _sendgrid(server.url).send(_email())

    assert str(status) in str(caught.value)
    assert CUSTOMER not in str(caught.value) and API_KEY not in str(caught.value)


@pytest.mark.parametrize("status", [400, 413])
def test_sendgrid_client_errors_are_permanent(status):
    with FakeHttpServer(Reply(status, {"errors": [{"message": f"bad {CUSTOMER}"}]})) as server:
        with pytest.raises(PermanentError) as caught:
            _sendgrid(server.url).send(_email())

    assert str(status) in str(caught.value)
    assert CUSTOMER not in str(caught.value) and API_KEY not in str(caught.value)


def test_sendgrid_connection_refused_is_transient():
    with refused_url() as url:
        with pytest.raises(TransientError):
            _sendgrid(url).send(_email())


def test_sendgrid_no_answer_is_transient():
    with FakeHttpServer(Reply(hang=True)) as server:
        with pytest.raises(TransientError):
            _sendgrid(server.url, timeout=SHORT_TIMEOUT).send(_email())

    assert len(server.requests) == 1


def test_sendgrid_does_not_follow_a_redirect_with_the_key():
    with FakeHttpServer() as elsewhere:
        with FakeHttpServer(Reply(307, headers={"Location": elsewhere.url + "/steal"})) as server:
            with pytest.raises(PermanentError):
                _sendgrid(server.url).send(_email())

    assert elsewhere.requests == []


# ---- Veriff -------------------------------------------------------------------


VERIFF_OK = {
    "status": "success",
    "verification": {
        "id": "f04bdb47-d3be-4b28-b028-a652feb060b5",
        "url": "https://alchemy.veriff.test/v/session-token",
        "vendorData": "A-1001",
        "host": "https://alchemy.veriff.test",
        "status": "created",
        "sessionToken": "token",
    },
}


def _veriff(url: str, **options) -> VeriffClient:
    clock = FixedClock(datetime(2026, 11, 29, 9, 30, 25, 597000, tzinfo=timezone.utc))
    return VeriffClient(url, VERIFF_KEY, clock=clock, **options)


@pytest.mark.parametrize("status", [200, 201])
def test_veriff_creates_a_session_with_the_order_id_as_vendor_data(status):
    with FakeHttpServer(Reply(status, VERIFF_OK)) as server:
        session = _veriff(server.url).create_session("A-1001")

    assert session == ProviderSession(
        session_id="f04bdb47-d3be-4b28-b028-a652feb060b5", url="https://alchemy.veriff.test/v/session-token"
    )
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/v1/sessions"
    assert request.headers["x-auth-client"] == VERIFF_KEY
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"verification": {"vendorData": "A-1001", "timestamp": "2026-11-29T09:30:25.597Z"}}


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_veriff_overload_and_server_errors_are_transient(status):
    with FakeHttpServer(Reply(status)) as server:
        with pytest.raises(TransientError, match=str(status)):
            _veriff(server.url).create_session("A-1001")


@pytest.mark.parametrize("status", [401, 403, 404, 301, 308])
def test_veriff_credential_errors_are_transient(status):
    """Our key (rotated, revoked) or base URL, not this order: fixing them opens the backlog's
    sessions, where a PermanentError would leave every link and reminder meanwhile unsent for good."""
    with FakeHttpServer(Reply(status, {"status": "fail", "code": 1801})) as server:
        with pytest.raises(TransientError, match=str(status)) as caught:
            _veriff(server.url).create_session("A-1001")

    assert VERIFF_KEY not in str(caught.value)


@pytest.mark.parametrize("status", [400, 422])
def test_veriff_client_errors_are_permanent(status):
    with FakeHttpServer(Reply(status, {"status": "fail", "code": 1102})) as server:
        with pytest.raises(PermanentError, match=str(status)) as caught:
            _veriff(server.url).create_session("A-1001")

    assert VERIFF_KEY not in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        "<html>maintenance</html>",
        {"status": "fail", "verification": VERIFF_OK["verification"]},
        {"status": "success", "verification": {"id": "f04bdb47"}},
        {"status": "success", "verification": {"id": "", "url": "https://x.test"}},
        # never emailed: a link to anything but Veriff's https page (stored, every later email
        # of the order would carry it, or fail to render it)
        {"status": "success", "verification": {"id": "f04bdb47", "url": "http://alchemy.veriff.test/v/t"}},
        {"status": "success", "verification": {"id": "f04bdb47", "url": "javascript:alert(1)//https://x"}},
        {"status": "success", "verification": {"id": "f04bdb47", "url": "https:///v/no-host"}},
        {"status": "success", "verification": {"id": "f04bdb47", "url": "https://[veriff/v/t"}},
        {"status": "success"},
        [],
    ],
)
def test_veriff_success_without_a_usable_session_is_transient(body):
    with FakeHttpServer(Reply(201, body)) as server:
        with pytest.raises(TransientError):
            _veriff(server.url).create_session("A-1001")


def test_veriff_connection_refused_is_transient():
    with refused_url() as url:
        with pytest.raises(TransientError):
            _veriff(url).create_session("A-1001")


def test_veriff_no_answer_is_transient():
    with FakeHttpServer(Reply(hang=True)) as server:
        with pytest.raises(TransientError):
            _veriff(server.url, timeout=SHORT_TIMEOUT).create_session("A-1001")


def test_local_provider_is_deterministic_per_order():
    provider = LocalVerificationProvider("http://127.0.0.1:8099/verify/")

    first = provider.create_session("A-1001")
    again = provider.create_session("A-1001")
    other = provider.create_session("A-1002")

    assert first == again
    assert first.url == f"http://127.0.0.1:8099/verify/{first.session_id}"
    assert other.session_id != first.session_id


def test_factory_passes_the_configured_local_verify_url():
    settings = VeriffSettings(base_url="local", local_verify_url="http://127.0.0.1:8123/verify")

    provider = make_verification_provider(settings)

    assert provider.create_session("A-1").url.startswith("http://127.0.0.1:8123/verify/")
    assert "/verify/verify/" not in provider.create_session("A-1").url


def test_factory_uses_veriff_when_key_and_base_url_are_set():
    with FakeHttpServer(Reply(201, VERIFF_OK)) as server:
        provider = make_verification_provider(VeriffSettings(api_key=VERIFF_KEY, base_url=server.url))
        session = provider.create_session("A-1001")

    assert isinstance(provider, VeriffClient)
    assert session.session_id == VERIFF_OK["verification"]["id"]
    assert server.requests[0].headers["x-auth-client"] == VERIFF_KEY


@pytest.mark.parametrize(
    "settings",
    [
        VeriffSettings(api_key=VERIFF_KEY, base_url="local", local_verify_url="http://127.0.0.1:8099/verify"),
        VeriffSettings(api_key=VERIFF_KEY, base_url="LOCAL", local_verify_url="http://127.0.0.1:8099/verify"),
        VeriffSettings(api_key=None, base_url="http://127.0.0.1:9", local_verify_url="http://127.0.0.1:8099/verify"),
        VeriffSettings(api_key=VERIFF_KEY, base_url="", local_verify_url="http://127.0.0.1:8099/verify"),
    ],
)
def test_factory_falls_back_to_the_local_provider(settings):
    provider = make_verification_provider(settings)

    assert isinstance(provider, LocalVerificationProvider)
    assert provider.create_session("A-1001").url.startswith("http://127.0.0.1:8099/verify/")


# ---- refund API ----------------------------------------------------------------


def _refunds(url: str, **options) -> HttpRefundGateway:
    return HttpRefundGateway(url + "/api/refunds", REFUND_TOKEN, **options)


def test_refund_posts_order_and_reason_with_token_and_idempotency_key():
    with FakeHttpServer(Reply(200, {"ok": True})) as server:
        result = _refunds(server.url).refund("A-1001", "A-1001:refund", "expired")

    assert result is RefundResult.REFUNDED
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/api/refunds"
    assert request.headers["authorization"] == f"Bearer {REFUND_TOKEN}"
    assert request.headers["idempotency-key"] == "A-1001:refund"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"orderId": "A-1001", "source": "orders", "reason": "expired"}


def test_refund_tells_the_store_its_own_order_id_and_source_not_our_key():
    with FakeHttpServer(Reply(200, {"ok": True})) as server:
        _refunds(server.url).refund("lightspeed:0af7b240-ab83", "refund-lightspeed:0af7b240-ab83", "declined")

    [request] = server.requests
    assert json.loads(request.body) == {"orderId": "0af7b240-ab83", "source": "lightspeed", "reason": "declined"}
    assert request.headers["idempotency-key"] == "refund-lightspeed:0af7b240-ab83"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, RefundResult.REFUNDED),
        (201, RefundResult.REFUNDED),
        (202, RefundResult.REFUNDED),
        (204, RefundResult.REFUNDED),
        (409, RefundResult.REFUNDED),  # already refunded
        (400, RefundResult.FAILED),
        (404, RefundResult.FAILED),
        (422, RefundResult.FAILED),
        (302, RefundResult.FAILED),  # not followed: the token stays here
    ],
)
def test_refund_status_mapping(status, expected):
    with FakeHttpServer(Reply(status, headers={"Location": "http://127.0.0.1:9/x"} if status == 302 else {})) as server:
        assert _refunds(server.url).refund("A-1001", "key-1", "declined") is expected

    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_refund_overload_and_server_errors_are_transient(status):
    with FakeHttpServer(Reply(status)) as server:
        with pytest.raises(TransientError, match=str(status)) as caught:
            _refunds(server.url).refund("A-1001", "key-1", "declined")

    assert REFUND_TOKEN not in str(caught.value)


@pytest.mark.parametrize("status", [401, 403])
def test_refund_credential_errors_are_transient(status):
    """Our token (rotated, revoked), not this order: a fixed token refunds the backlog, where
    FAILED would leave every refund meanwhile to be made by hand."""
    with FakeHttpServer(Reply(status)) as server:
        with pytest.raises(TransientError, match=str(status)) as caught:
            _refunds(server.url).refund("A-1001", "key-1", "declined")

    assert REFUND_TOKEN not in str(caught.value)


def test_refund_retry_sends_the_same_idempotency_key():
    with FakeHttpServer(Reply(503), Reply(200)) as server:
        gateway = _refunds(server.url)
        with pytest.raises(TransientError):
            gateway.refund("A-1001", "A-1001:refund", "expired")
        assert gateway.refund("A-1001", "A-1001:refund", "expired") is RefundResult.REFUNDED

    assert [r.headers["idempotency-key"] for r in server.requests] == ["A-1001:refund"] * 2


def test_refund_connection_refused_is_transient():
    with refused_url() as url:
        with pytest.raises(TransientError):
            _refunds(url).refund("A-1001", "key-1", "expired")


def test_refund_no_answer_is_transient():
    with FakeHttpServer(Reply(hang=True)) as server:
        with pytest.raises(TransientError):
            _refunds(server.url, timeout=SHORT_TIMEOUT).refund("A-1001", "key-1", "expired")


def test_manual_gateway_leaves_the_refund_to_an_operator():
    assert ManualRefundGateway().refund("A-1001", "key-1", "expired") is RefundResult.MANUAL


def test_refund_factory_builds_the_configured_gateway():
    with FakeHttpServer(Reply(201)) as server:
        gateway = make_refund_gateway(
            RefundSettings(backend="http", api_url=server.url + "/refund", api_token=REFUND_TOKEN)
        )
        assert gateway.refund("A-1001", "key-1", "expired") is RefundResult.REFUNDED

    assert isinstance(gateway, HttpRefundGateway)
    assert server.requests[0].path == "/refund"
    assert isinstance(make_refund_gateway(RefundSettings(backend="manual")), ManualRefundGateway)


def test_refund_factory_names_a_missing_setting():
    with pytest.raises(ConfigError) as caught:
        make_refund_gateway(RefundSettings(backend="http", api_url="http://127.0.0.1:9/refund"))

    assert caught.value.variable == "REFUND_API_TOKEN"
