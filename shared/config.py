"""Settings: read from the environment once, validated at start.

A missing or malformed value raises ConfigError naming the variable. Secrets
are kept out of repr() so a settings object can never leak into a log line.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import ConfigError

_DURATION = re.compile(r"(\d+)(d|h|m|s)")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str, variable: str = "duration") -> timedelta:
    """Parse `72h`, `30m`, `90s`, `1d`, or a sum such as `1h30m`."""
    cleaned = text.strip().lower()
    if not cleaned or _DURATION.sub("", cleaned):
        raise ConfigError(variable, f"{text!r} is not a duration like 72h, 30m or 90s")
    total = timedelta()
    for amount, unit in _DURATION.findall(cleaned):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    if total <= timedelta(0):
        raise ConfigError(variable, "must be longer than zero")
    return total


@dataclass(frozen=True)
class Settings:
    """Every setting the functions read. Build with `Settings.from_env()`."""

    database_url: str | None = None
    instance_connection_name: str | None = None
    db_name: str = "verification"
    db_user: str | None = None
    db_password: str | None = field(default=None, repr=False)
    db_iam_auth: bool = False
    db_pool_size: int = 2
    db_max_overflow: int = 2

    verification_window: timedelta = timedelta(hours=72)
    reminder_offsets: tuple[timedelta, ...] = (timedelta(hours=24),)
    sweep_grace: timedelta = timedelta(minutes=5)
    # How long an email or refund call may be in flight before another attempt may take it
    # over (longer than a send can take: a shorter lease could send twice).
    email_lease: timedelta = timedelta(minutes=5)
    # Retention: a closed session's customer email and id are erased RETENTION after it closed;
    # webhook idempotency rows are kept WEBHOOK_RETENTION (longer than any sender retries: they
    # are the only replay guard of the senders that sign no timestamp); delivered outbox rows,
    # processed message ids and finished local deliveries REPLAY_RETENTION (Pub/Sub keeps a
    # message for 7 days at most).
    retention: timedelta = timedelta(days=90)
    webhook_retention: timedelta = timedelta(days=30)
    replay_retention: timedelta = timedelta(days=8)
    minimum_age: int = 21
    decision_grace: timedelta = timedelta(hours=24)
    max_order_age: timedelta = timedelta(days=7)

    order_webhook_secret: bytes | None = field(default=None, repr=False)
    lightspeed_client_secret: str | None = field(default=None, repr=False)
    veriff_api_key: str | None = field(default=None, repr=False)
    veriff_shared_secret: str | None = field(default=None, repr=False)
    veriff_base_url: str = "https://stationapi.veriff.com"
    local_verify_url: str = "http://127.0.0.1:8080/verify"
    max_body_bytes: int = 1_048_576

    tasks_backend: str = "cloud"
    google_cloud_project: str | None = None
    tasks_location: str = "us-central1"
    tasks_queue: str = "verification-timers"
    timer_url: str | None = None
    tasks_service_account: str | None = None

    events_backend: str = "pubsub"
    local_subscriber_urls: Mapping[str, str] = field(default_factory=dict)

    email_backend: str = "console"
    email_from: str = "verify@example.com"
    store_name: str = "Our store"
    store_timezone: str = "UTC"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = True
    sendgrid_api_key: str | None = field(default=None, repr=False)
    sendgrid_base_url: str = "https://api.sendgrid.com"

    refund_backend: str = "manual"
    refund_api_url: str | None = None
    refund_api_token: str | None = field(default=None, repr=False)
    max_message_age: timedelta = timedelta(days=3)

    console_auth: str = "iap"
    iap_audience: str | None = None
    iap_public_keys_url: str = "https://www.gstatic.com/iap/verify/public_key"
    console_secret: str | None = field(default=None, repr=False)
    local_intake_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment (os.environ unless given)."""
        env = os.environ if env is None else env
        r = _Reader(env)
        settings = cls(
            database_url=r.text("DATABASE_URL"),
            instance_connection_name=r.text("INSTANCE_CONNECTION_NAME"),
            db_name=r.text("DB_NAME") or "verification",
            db_user=r.text("DB_USER"),
            db_password=r.text("DB_PASSWORD"),
            db_iam_auth=r.flag("DB_IAM_AUTH", False),
            db_pool_size=r.integer("DB_POOL_SIZE", 2, minimum=1),
            db_max_overflow=r.integer("DB_MAX_OVERFLOW", 2, minimum=0),
            verification_window=r.duration("VERIFICATION_WINDOW", "72h"),
            reminder_offsets=r.durations("REMINDER_OFFSETS", "24h"),
            sweep_grace=r.duration("SWEEP_GRACE", "5m"),
            email_lease=r.duration("EMAIL_LEASE", "5m"),
            retention=r.duration("RETENTION", "90d"),
            webhook_retention=r.duration("WEBHOOK_RETENTION", "30d"),
            replay_retention=r.duration("REPLAY_RETENTION", "8d"),
            minimum_age=r.integer("MINIMUM_AGE", 21, minimum=1),
            decision_grace=r.duration("DECISION_GRACE", "24h"),
            max_order_age=r.duration("MAX_ORDER_AGE", "7d"),
            order_webhook_secret=r.webhook_secret("ORDER_WEBHOOK_SECRET"),
            lightspeed_client_secret=r.text("LIGHTSPEED_CLIENT_SECRET"),
            veriff_api_key=r.text("VERIFF_API_KEY"),
            veriff_shared_secret=r.text("VERIFF_SHARED_SECRET"),
            veriff_base_url=(r.text("VERIFF_BASE_URL") or cls.veriff_base_url).rstrip("/"),
            local_verify_url=r.text("LOCAL_VERIFY_URL") or cls.local_verify_url,
            max_body_bytes=r.integer("MAX_BODY_BYTES", 1_048_576, minimum=1),
            tasks_backend=r.choice("TASKS_BACKEND", "cloud", ("cloud", "local")),
            google_cloud_project=r.text("GOOGLE_CLOUD_PROJECT"),
            tasks_location=r.text("TASKS_LOCATION") or cls.tasks_location,
            tasks_queue=r.text("TASKS_QUEUE") or cls.tasks_queue,
            timer_url=r.text("TIMER_URL"),
            tasks_service_account=r.text("TASKS_SERVICE_ACCOUNT"),
            events_backend=r.choice("EVENTS_BACKEND", "pubsub", ("pubsub", "local")),
            local_subscriber_urls=r.mapping("LOCAL_SUBSCRIBER_URLS"),
            email_backend=r.choice("EMAIL_BACKEND", "console", ("sendgrid", "smtp", "console")),
            email_from=r.text("EMAIL_FROM") or cls.email_from,
            store_name=r.text("STORE_NAME") or cls.store_name,
            store_timezone=r.timezone("STORE_TIMEZONE", "UTC"),
            smtp_host=r.text("SMTP_HOST") or cls.smtp_host,
            smtp_port=r.integer("SMTP_PORT", 25, minimum=1),
            smtp_user=r.text("SMTP_USER"),
            smtp_password=r.text("SMTP_PASSWORD"),
            smtp_starttls=r.flag("SMTP_STARTTLS", True),
            sendgrid_api_key=r.text("SENDGRID_API_KEY"),
            sendgrid_base_url=(r.text("SENDGRID_BASE_URL") or cls.sendgrid_base_url).rstrip("/"),
            refund_backend=r.choice("REFUND_BACKEND", "manual", ("http", "manual")),
            refund_api_url=r.text("REFUND_API_URL"),
            refund_api_token=r.text("REFUND_API_TOKEN"),
            max_message_age=r.duration("MAX_MESSAGE_AGE", "3d"),
            console_auth=r.choice("CONSOLE_AUTH", "iap", ("iap", "dev")),
            iap_audience=r.text("IAP_AUDIENCE"),
            iap_public_keys_url=r.text("IAP_PUBLIC_KEYS_URL") or cls.iap_public_keys_url,
            console_secret=r.text("CONSOLE_SECRET"),
            local_intake_url=r.text("LOCAL_INTAKE_URL"),
        )
        if settings.console_auth == "dev" and r.text("K_SERVICE"):
            raise ConfigError("CONSOLE_AUTH", "dev is refused on Cloud Run (K_SERVICE is set)")
        settings._check_combinations()
        return settings

    def _check_combinations(self) -> None:
        if not self.database_url and not self.instance_connection_name:
            raise ConfigError(
                "DATABASE_URL", "set DATABASE_URL, or INSTANCE_CONNECTION_NAME for Cloud SQL"
            )
        if self.database_url and not self.database_url.startswith("postgresql+pg8000://"):
            raise ConfigError("DATABASE_URL", "must start with postgresql+pg8000://")
        if self.instance_connection_name and not self.database_url:
            if not self.db_user:
                raise ConfigError("DB_USER", "required with INSTANCE_CONNECTION_NAME")
            if not self.db_iam_auth and not self.db_password:
                raise ConfigError("DB_PASSWORD", "required unless DB_IAM_AUTH=true")
        if self.verification_window <= max(self.reminder_offsets, default=timedelta(0)):
            raise ConfigError("REMINDER_OFFSETS", "every reminder must come before the deadline")
        if self.tasks_backend == "cloud":
            for name, value in (
                ("GOOGLE_CLOUD_PROJECT", self.google_cloud_project),
                ("TIMER_URL", self.timer_url),
            ):
                if not value:
                    raise ConfigError(name, "required when TASKS_BACKEND=cloud")
        if self.tasks_backend == "local" and not self.timer_url:
            raise ConfigError("TIMER_URL", "required when TASKS_BACKEND=local")
        if self.events_backend == "pubsub" and not self.google_cloud_project:
            raise ConfigError("GOOGLE_CLOUD_PROJECT", "required when EVENTS_BACKEND=pubsub")
        if self.refund_backend == "http":
            for name, value in (
                ("REFUND_API_URL", self.refund_api_url),
                ("REFUND_API_TOKEN", self.refund_api_token),
            ):
                if not value:
                    raise ConfigError(name, "required when REFUND_BACKEND=http")
        if self.email_backend == "sendgrid" and not self.sendgrid_api_key:
            raise ConfigError("SENDGRID_API_KEY", "required when EMAIL_BACKEND=sendgrid")

    def require(self, variable: str) -> str:
        """Return a setting a caller cannot work without, or raise naming it."""
        value = getattr(self, variable.lower())
        if not value:
            raise ConfigError(variable, "is required by this function")
        return value


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def flag(self, name: str, default: bool) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"{value!r} is not true or false")

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"{value!r} is not a whole number") from None
        if number < minimum:
            raise ConfigError(name, f"must be at least {minimum}")
        return number

    def duration(self, name: str, default: str) -> timedelta:
        return parse_duration(self.text(name) or default, name)

    def durations(self, name: str, default: str) -> tuple[timedelta, ...]:
        value = self.text(name)
        if value is None:
            value = default
        parts = [p for p in (s.strip() for s in value.split(",")) if p]
        return tuple(sorted(parse_duration(p, name) for p in parts))

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self.text(name) or default).lower()
        if value not in allowed:
            raise ConfigError(name, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def timezone(self, name: str, default: str) -> str:
        value = self.text(name) or default
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(name, f"{value!r} is not an IANA time zone") from None
        return value

    def mapping(self, name: str) -> dict[str, str]:
        """`topic=url,topic=url` (local stack wiring)."""
        value = self.text(name)
        if value is None:
            return {}
        pairs = {}
        for item in value.split(","):
            key, sep, url = item.partition("=")
            if not sep or not key.strip() or not url.strip():
                raise ConfigError(name, "expected topic=url pairs separated by commas")
            pairs[key.strip()] = url.strip()
        return pairs

    def webhook_secret(self, name: str) -> bytes | None:
        """Standard Webhooks secret `whsec_<base64>` decoded to its key bytes."""
        value = self.text(name)
        if value is None:
            return None
        encoded = value.removeprefix("whsec_")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ConfigError(name, "must be whsec_ followed by base64") from None
        if len(key) < 16:
            raise ConfigError(name, "key is shorter than 16 bytes")
        return key
