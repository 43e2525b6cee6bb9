from datetime import timedelta

import pytest

from shared.config import (
    ConsoleSettings, DatabaseSettings, EmailSettings, EventsSettings, InboundSettings, LifecycleSettings,
    RefundSettings, Runtime, Settings, TasksSettings, parse_duration,
)
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
    assert settings.lifecycle.verification_window == timedelta(hours=72)
    assert settings.lifecycle.reminder_offsets == (timedelta(hours=24),)
    assert settings.inbound.max_body_bytes == 1_048_576
    assert settings.email.backend == "console"
    assert settings.refunds.backend == "manual"


def test_reminder_offsets_are_sorted_list():
    settings = Settings.from_env({**BASE, "REMINDER_OFFSETS": "48h, 24h", "VERIFICATION_WINDOW": "72h"})
    assert settings.lifecycle.reminder_offsets == (timedelta(hours=24), timedelta(hours=48))


def test_credentialed_endpoints_take_https_or_this_machine():
    settings = Settings.from_env({**BASE, "REFUND_BACKEND": "http", "REFUND_API_TOKEN": "t",
                                  "REFUND_API_URL": "http://127.0.0.1:8999/refunds", "VERIFF_API_KEY": "k",
                                  "VERIFF_BASE_URL": "https://stationapi.veriff.com"})
    assert settings.refunds.api_url == "http://127.0.0.1:8999/refunds"
    assert Settings.from_env({**BASE, "VERIFF_API_KEY": "k", "VERIFF_BASE_URL": "local"})


@pytest.mark.parametrize("env, variable", [
    ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://u@h/db"}, "DATABASE_URL"),
    ({"VERIFICATION_WINDOW": "soon"}, "VERIFICATION_WINDOW"),
    ({"VERIFICATION_WINDOW": "721h"}, "VERIFICATION_WINDOW"),  # past what Cloud Tasks schedules
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
    # Endpoints our credentials go to: https, or http to this machine only.
    ({"REFUND_BACKEND": "http", "REFUND_API_URL": "http://shop.example/refunds", "REFUND_API_TOKEN": "t"},
     "REFUND_API_URL"),
    ({"REFUND_BACKEND": "http", "REFUND_API_URL": "shop.example/refunds", "REFUND_API_TOKEN": "t"}, "REFUND_API_URL"),
    ({"VERIFF_API_KEY": "k", "VERIFF_BASE_URL": "http://stationapi.veriff.com"}, "VERIFF_BASE_URL"),
    ({"EMAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": "k", "SENDGRID_BASE_URL": "http://api.sendgrid.com"},
     "SENDGRID_BASE_URL"),
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
    assert settings.database.iam_auth and settings.database.password is None


def test_secrets_stay_out_of_repr():
    settings = Settings.from_env({**BASE, "VERIFF_SHARED_SECRET": "s3cr3t-value",
                                  "DB_PASSWORD": "pw-value", "REFUND_API_TOKEN": "tok-value",
                                  "CONSOLE_AUTH": "dev", "CONSOLE_DEV_TOKEN": "dev-token-value-" + "d" * 20})
    shown = repr(settings)
    for secret in ("s3cr3t-value", "pw-value", "tok-value", "dev-token-value-"):
        assert secret not in shown


def test_require_names_missing_variable():
    settings = Settings.from_env(BASE)
    with pytest.raises(ConfigError) as error:
        settings.require("ORDER_WEBHOOK_SECRET")
    assert error.value.variable == "ORDER_WEBHOOK_SECRET"


@pytest.mark.parametrize("section, env, variable", [
    (DatabaseSettings, {"DATABASE_URL": "postgresql://u@h/db"}, "DATABASE_URL"),
    (LifecycleSettings, {"REMINDER_OFFSETS": "80h"}, "REMINDER_OFFSETS"),
    (TasksSettings, {"TASKS_BACKEND": "cloud", "TIMER_URL": "http://x/timer"}, "GOOGLE_CLOUD_PROJECT"),
    (EventsSettings, {"EVENTS_BACKEND": "local", "MAX_MESSAGE_AGE": "old"}, "MAX_MESSAGE_AGE"),
    (EmailSettings, {"SMTP_PORT": "0"}, "SMTP_PORT"),
    (RefundSettings, {"REFUND_BACKEND": "http", "REFUND_API_URL": "http://x"}, "REFUND_API_TOKEN"),
    (InboundSettings, {"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES"),
    (ConsoleSettings, {"CONSOLE_AUTH": "dev", "K_SERVICE": "operator-console"}, "CONSOLE_AUTH"),
    (ConsoleSettings, {"CONSOLE_AUTH": "dev", "CONSOLE_DEV_TOKEN": "x" * 40, "K_SERVICE": "operator-console"},
     "CONSOLE_AUTH"),
    (ConsoleSettings, {"CONSOLE_AUTH": "dev"}, "CONSOLE_DEV_TOKEN"),
    (ConsoleSettings, {"CONSOLE_AUTH": "dev", "CONSOLE_DEV_TOKEN": "  "}, "CONSOLE_DEV_TOKEN"),
    (ConsoleSettings, {"CONSOLE_AUTH": "dev", "CONSOLE_DEV_TOKEN": "x" * 31}, "CONSOLE_DEV_TOKEN"),
])
def test_each_section_validates_itself_naming_the_variable(section, env, variable):
    with pytest.raises(ConfigError) as error:
        section.from_env(env)
    assert error.value.variable == variable


def test_settings_are_sections():
    settings = Settings.from_env({**BASE, "TASKS_QUEUE": "q", "EMAIL_FROM": "a@b.c", "VERIFF_API_KEY": "k",
                                  "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:1", "K_SERVICE": "send-customer-email"})
    assert settings.tasks == TasksSettings.from_env({**BASE, "TASKS_QUEUE": "q",
                                                     "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:1"})
    assert (settings.tasks.queue, settings.tasks.emulator_host) == ("q", "127.0.0.1:1")
    assert settings.email.sender == "a@b.c" and settings.email.on_cloud_run
    assert settings.inbound.providers.veriff.api_key == "k"
    assert settings.database.url == BASE["DATABASE_URL"]


def test_require_finds_the_variable_in_its_section():
    settings = Settings.from_env({**BASE, "IAP_AUDIENCE": "/projects/1/apps/a"})
    assert settings.require("IAP_AUDIENCE") == "/projects/1/apps/a"
    assert settings.console.require("IAP_AUDIENCE") == "/projects/1/apps/a"
    assert settings.require("TIMER_URL") == BASE["TIMER_URL"]
    with pytest.raises(ConfigError) as error:
        settings.inbound.require("VERIFF_SHARED_SECRET")
    assert error.value.variable == "VERIFF_SHARED_SECRET"
    with pytest.raises(KeyError):
        settings.require("NO_SUCH_VARIABLE")


def test_schema_owner_reads_only_the_connection():
    database = DatabaseSettings.for_schema_owner({"DATABASE_URL": BASE["DATABASE_URL"], "DB_POOL_SIZE": "big",
                                                  "TASKS_BACKEND": "redis"})
    assert (database.url, database.pool_size, database.max_overflow) == (BASE["DATABASE_URL"], 1, 0)


def test_runtime_never_raises():
    runtime = Runtime.from_env({"FUNCTION_TARGET": "sweep", "LOG_LEVEL": "debug", "GOOGLE_CLOUD_PROJECT": "p"})
    assert (runtime.function_targets, runtime.log_level, runtime.project) == (("sweep",), "DEBUG", "p")
    assert Runtime.from_env({}) == Runtime()


def test_backends_and_console_auth_are_read_as_their_enums_whatever_the_case():
    from shared.config import ConsoleAuth, EmailBackend, EventsBackend, RefundBackend, TasksBackend

    settings = Settings.from_env({**BASE, "TASKS_BACKEND": "LOCAL", "EMAIL_BACKEND": "Smtp",
                                  "REFUND_BACKEND": "manual", "CONSOLE_AUTH": "dev", "CONSOLE_DEV_TOKEN": "t" * 32})
    assert settings.tasks.backend is TasksBackend.LOCAL
    assert settings.events.backend is EventsBackend.LOCAL
    assert settings.email.backend is EmailBackend.SMTP
    assert settings.refunds.backend is RefundBackend.MANUAL
    assert settings.console.auth is ConsoleAuth.DEV
    with pytest.raises(ConfigError) as error:
        Settings.from_env({**BASE, "EMAIL_BACKEND": "carrier-pigeon"})
    assert error.value.variable == "EMAIL_BACKEND" and "sendgrid, smtp, console" in str(error.value)


def test_the_database_url_and_its_password_stay_out_of_repr():
    settings = Settings.from_env({**BASE, "DATABASE_URL": "postgresql+pg8000://verifier:hunter2-pw@db.internal/v"})
    assert "hunter2-pw" not in repr(settings) and "hunter2-pw" not in repr(settings.database)
    assert settings.database.url.endswith("@db.internal/v")  # still there to connect with


@pytest.mark.parametrize("env, variable", [
    ({"IAP_PUBLIC_KEYS_URL": "http://keys.example/iap"}, "IAP_PUBLIC_KEYS_URL"),
    ({"IAP_PUBLIC_KEYS_URL": "file:/tmp/keys.json"}, "IAP_PUBLIC_KEYS_URL"),
    ({"CONSOLE_SECRET": "x"}, "CONSOLE_SECRET"),
    ({"CONSOLE_SECRET": "y" * 31}, "CONSOLE_SECRET"),
])
def test_console_settings_are_checked_on_cloud_run(env, variable):
    with pytest.raises(ConfigError) as error:
        ConsoleSettings.from_env({"K_SERVICE": "operator-console", **env})
    assert error.value.variable == variable
    ConsoleSettings.from_env(env)  # a local stack and the tests may use them
    ConsoleSettings.from_env({"K_SERVICE": "operator-console", "CONSOLE_SECRET": "z" * 32})


def test_the_local_veriff_stand_in_is_refused_on_cloud_run():
    from shared.providers.veriff.adapter import LocalVerificationProvider, make_verification_provider
    from shared.config import VeriffSettings

    for env in ({}, {"VERIFF_BASE_URL": "local", "VERIFF_API_KEY": "k"}):
        with pytest.raises(ConfigError) as error:
            make_verification_provider(VeriffSettings.from_env({"K_SERVICE": "webhook-intake", **env}))
        assert error.value.variable == "VERIFF_API_KEY"
        assert isinstance(make_verification_provider(VeriffSettings.from_env(env)), LocalVerificationProvider)
