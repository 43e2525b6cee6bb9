from datetime import timedelta

import pytest

from shared.config import Settings, parse_duration
from shared.errors import ConfigError

BASE = {
    "DATABASE_URL": "postgresql+pg8000://u@127.0.0.1:5432/db",
    "TASKS_BACKEND": "local",
    "TIMER_URL": "http://127.0.0.1:1/timer",
    "EVENTS_BACKEND": "local",
}


@pytest.mark.parametrize("text, expected", [
    ("72h", timedelta(hours=72)),
    ("90s", timedelta(seconds=90)),
    ("30m", timedelta(minutes=30)),
    ("1d", timedelta(days=1)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    (" 20S ", timedelta(seconds=20)),
])
def test_parse_duration_accepts_units(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "72", "h", "-5m", "0s", "3 days", "1.5h", "5w"])
def test_parse_duration_rejects_malformed(text):
    with pytest.raises(ConfigError) as error:
        parse_duration(text, "VERIFICATION_WINDOW")
    assert "VERIFICATION_WINDOW" in str(error.value)


def test_defaults():
    settings = Settings.from_env(BASE)
    assert settings.verification_window == timedelta(hours=72)
    assert settings.reminder_offsets == (timedelta(hours=24),)
    assert settings.max_body_bytes == 1_048_576
    assert settings.email_backend == "console"
    assert settings.refund_backend == "manual"


def test_reminder_offsets_are_sorted_list():
    settings = Settings.from_env({**BASE, "REMINDER_OFFSETS": "48h, 24h", "VERIFICATION_WINDOW": "72h"})
    assert settings.reminder_offsets == (timedelta(hours=24), timedelta(hours=48))


@pytest.mark.parametrize("env, variable", [
    ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://u@h/db"}, "DATABASE_URL"),
    ({"VERIFICATION_WINDOW": "soon"}, "VERIFICATION_WINDOW"),
    ({"REMINDER_OFFSETS": "80h"}, "REMINDER_OFFSETS"),
    ({"MAX_BODY_BYTES": "big"}, "MAX_BODY_BYTES"),
    ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE"),
    ({"TASKS_BACKEND": "redis"}, "TASKS_BACKEND"),
    ({"TASKS_BACKEND": "cloud"}, "GOOGLE_CLOUD_PROJECT"),
    ({"EVENTS_BACKEND": "pubsub"}, "GOOGLE_CLOUD_PROJECT"),
    ({"TIMER_URL": ""}, "TIMER_URL"),
    ({"ORDER_WEBHOOK_SECRET": "whsec_!!notbase64"}, "ORDER_WEBHOOK_SECRET"),
    ({"ORDER_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "ORDER_WEBHOOK_SECRET"),
    ({"STORE_TIMEZONE": "Mars/Olympus"}, "STORE_TIMEZONE"),
    ({"REFUND_BACKEND": "http"}, "REFUND_API_URL"),
    ({"EMAIL_BACKEND": "sendgrid"}, "SENDGRID_API_KEY"),
    ({"DB_IAM_AUTH": "maybe"}, "DB_IAM_AUTH"),
    ({"DATABASE_URL": "", "INSTANCE_CONNECTION_NAME": "p:r:i"}, "DB_USER"),
    ({"DATABASE_URL": "", "INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "u"}, "DB_PASSWORD"),
])
def test_bad_configuration_names_the_variable(env, variable):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({**BASE, **env})
    assert error.value.variable == variable
    assert variable in str(error.value)


def test_iam_auth_needs_no_password():
    settings = Settings.from_env({**BASE, "DATABASE_URL": "", "INSTANCE_CONNECTION_NAME": "p:r:i",
                                  "DB_USER": "sa@p.iam", "DB_IAM_AUTH": "true"})
    assert settings.db_iam_auth and settings.db_password is None


def test_secrets_stay_out_of_repr():
    settings = Settings.from_env({**BASE, "VERIFF_SHARED_SECRET": "s3cr3t-value",
                                  "DB_PASSWORD": "pw-value", "REFUND_API_TOKEN": "tok-value"})
    shown = repr(settings)
    for secret in ("s3cr3t-value", "pw-value", "tok-value"):
        assert secret not in shown


def test_require_names_missing_variable():
    settings = Settings.from_env(BASE)
    with pytest.raises(ConfigError) as error:
        settings.require("ORDER_WEBHOOK_SECRET")
    assert error.value.variable == "ORDER_WEBHOOK_SECRET"
