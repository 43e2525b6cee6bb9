"""The console's IAP key cache and CSRF tokens, without I/O."""

from __future__ import annotations

import pytest

from shared.console import auth, csrf
from shared.errors import Forbidden, Unauthorized
from tests.iap_keys import AUDIENCE, IapKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auth.time, "monotonic", fake)
    return fake


def test_keys_are_fetched_once_then_again_only_for_a_new_key_or_when_stale(clock):
    fetched = []
    published = {"k1": "PEM-1"}

    def fetch(url):
        fetched.append(url)
        return dict(published)

    keys = auth.PublicKeys("https://keys.example/iap", fetch)
    assert keys.get("k1") == "PEM-1" and keys.get("k1") == "PEM-1" and len(fetched) == 1
    published["k2"] = "PEM-2"  # IAP rotated its keys
    assert keys.get("k2") is None and len(fetched) == 1  # not refetched at once for every unknown id
    clock.now += auth.REFETCH_AFTER_SECONDS + 1
    assert keys.get("k2") == "PEM-2" and len(fetched) == 2
    clock.now += auth.KEYS_TTL_SECONDS + 1
    assert keys.get("k1") == "PEM-1" and len(fetched) == 3


def test_an_assertion_signed_with_another_algorithm_or_no_email_is_refused(tmp_path, clock):
    iap = IapKeys.generate()
    keys = auth.PublicKeys(iap.write_public(tmp_path))
    assert auth.verify_iap(iap.assertion("ops@store.example"), audience=AUDIENCE, keys=keys) == "ops@store.example"
    for bad in (iap.assertion(""), "e30.e30.", ""):
        with pytest.raises(Unauthorized):
            auth.verify_iap(bad, audience=AUDIENCE, keys=keys)


def test_csrf_tokens_belong_to_one_operator_for_a_working_day():
    token = csrf.issue("secret", "alice@example.com", now=1_000_000)
    csrf.check("secret", "alice@example.com", token, now=1_000_000 + 3600)
    for identity, secret, when in (("bob@example.com", "secret", 1_000_100),
                                   ("alice@example.com", "other-secret", 1_000_100),
                                   ("alice@example.com", "secret", 1_000_000 + csrf.VALID_SECONDS + 1),
                                   ("alice@example.com", "secret", 999_000)):
        with pytest.raises(Forbidden):
            csrf.check(secret, identity, token, now=when)
    with pytest.raises(Forbidden):
        csrf.check("secret", "alice@example.com", None, now=1_000_000)
