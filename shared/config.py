"""Settings: read from the environment once, validated at start.

A missing or malformed value raises ConfigError naming the variable. Secrets
are kept out of repr() so a settings object can never leak into a log line.
"""

from __future__ import annotations

import base64
import os
import re
from urllib.parse import urlsplit
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import ConfigError

class TasksBackend(StrEnum):
    CLOUD = "cloud"  # Cloud Tasks
    LOCAL = "local"  # the local stack's queue in PostgreSQL


class EventsBackend(StrEnum):
    PUBSUB = "pubsub"
    LOCAL = "local"  # the local stack's queue in PostgreSQL, pushed to the subscriber functions


class EmailBackend(StrEnum):
    SENDGRID = "sendgrid"
    SMTP = "smtp"
    CONSOLE = "console"  # printed, for the local stack only


class RefundBackend(StrEnum):
    HTTP = "http"  # the store's refund API
    MANUAL = "manual"  # an operator refunds, and records it in the console


class IntakeRelay(StrEnum):
    """When `webhook_intake` delivers an order's outbox rows."""

    AFTER_RESPONSE = "after_response"  # on the instance's relay thread (needs CPU between requests)
    IN_REQUEST = "in_request"  # before answering (for request-based billing, which throttles that thread)


class ConsoleAuth(StrEnum):
    IAP = "iap"  # Identity-Aware Proxy's signed header
    DEV = "dev"  # the local stack's fixed identity, on 127.0.0.1 only


_DURATION = re.compile(r"(\d+)(d|h|m|s)")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str, variable: str = "duration") -> timedelta:
    """Parse `72h`, `30m`, `90s`, `1d`, or a sum such as `1h30m`."""
    cleaned = text.strip().lower()
    if not cleaned or _DURATION.sub("", cleaned):
        raise ConfigError(variable, f"{text!r} is not a duration like 72h, 30m or 90s")
    total = timedelta()
    try:
        for amount, unit in _DURATION.findall(cleaned):
            total += timedelta(**{_UNITS[unit]: int(amount)})
    except (OverflowError, ValueError):  # past timedelta's range, or more digits than int() reads
        raise ConfigError(variable, f"{text[:40]!r} is longer than any calendar") from None
    if total <= timedelta(0):
        raise ConfigError(variable, "must be longer than zero")
    return total


def _env(variable: str, default=None, *, read=None, secret: bool = False, factory=None):
    """A section field read from `variable` by `read(reader, variable, default)` (plain text
    unless given). The variable is named here once: `from_env` reads it, `require` finds it."""
    extra = {"default_factory": factory} if factory is not None else {"default": default}
    return field(repr=not secret, metadata={"env": variable, "read": read or _text}, **extra)


def _section(kind: type):
    """A field holding a whole section, read by its own `from_env`."""
    return field(default_factory=kind, metadata={"section": kind})


# Readers: (reader, variable, the field's default) -> value, raising ConfigError naming the variable.
def _text(r: _Reader, variable: str, default):
    return r.text(variable) or default


def _url(r: _Reader, variable: str, default: str) -> str:
    return (r.text(variable) or default).rstrip("/")


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _require_https(variable: str, url: str) -> None:
    """An endpoint we send a credential to: https, or plain http to this machine only (the local
    stack's and the tests' fake servers)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # an unclosed IPv6 bracket, a bad port
        host = None
    if not host or not (parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK)):
        raise ConfigError(variable, "must be an https:// URL (http:// only to 127.0.0.1): our credential goes to it")


def _present(r: _Reader, variable: str, default: bool) -> bool:
    return bool(r.text(variable)) or default


def _flag(r: _Reader, variable: str, default: bool) -> bool:
    return r.flag(variable, default)


def _integer(minimum: int):
    return lambda r, variable, default: r.integer(variable, default, minimum=minimum)


def _choice(kinds: type[StrEnum]):
    return lambda r, variable, default: kinds(r.choice(variable, default, tuple(kinds)))


def _duration(r: _Reader, variable: str, default: timedelta) -> timedelta:
    value = r.text(variable)
    return default if value is None else parse_duration(value, variable)


def _durations(r: _Reader, variable: str, default: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
    value = r.text(variable)
    return default if value is None else r.durations(variable, value)


def _timezone(r: _Reader, variable: str, default: str) -> str:
    return r.timezone(variable, default)


def _mapping(r: _Reader, variable: str, default) -> dict[str, str]:
    return r.mapping(variable)


def _webhook_secret(r: _Reader, variable: str, default) -> bytes | None:
    return r.webhook_secret(variable)


_EMAIL = re.compile(r"[^@\s,:]+@[a-z0-9-]+(\.[a-z0-9-]+)+")
_DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")


def _people(r: _Reader, variable: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A console allowlist: `alice@example.com, domain:example.com` (`user:` accepted and
    dropped), lower-cased. Groups and `allUsers` cannot be checked in an IAP assertion."""
    value = r.text(variable)
    if value is None:
        return default
    entries = []
    for raw in (part.strip().lower() for part in value.split(",")):
        entry = raw.removeprefix("user:")
        if not entry:
            continue
        if not (_EMAIL.fullmatch(entry) or (entry.startswith("domain:") and _DOMAIN.fullmatch(entry[7:]))):
            raise ConfigError(variable, f"{raw[:60]!r} is neither an email nor domain:<domain>")
        entries.append(entry)
    return tuple(entries)


class _Section:
    """What every section shares: reading itself from the environment (each field names its
    variable and reader once), its own cross-field rules (`_check`), and `require`."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None):
        """Read and validate this section (os.environ unless given)."""
        env = os.environ if env is None else env
        r = _Reader(env)
        values = {}
        for f in fields(cls):
            if "section" in f.metadata:
                values[f.name] = f.metadata["section"].from_env(env)
            else:
                default = f.default_factory() if f.default is MISSING else f.default
                values[f.name] = f.metadata["read"](r, f.metadata["env"], default)
        section = cls(**values)
        section._check(r)
        return section

    def _check(self, r: _Reader) -> None:
        """Rules between this section's fields (ConfigError naming a variable)."""

    def require(self, variable: str):
        """Return a setting a caller cannot work without, or raise naming it."""
        value = _lookup(self, variable)
        if value is _MISSING:
            raise KeyError(f"no setting reads {variable}")
        if not value:
            raise ConfigError(variable, "is required by this function")
        return value


_MISSING = object()


def _lookup(section, variable: str):
    for f in fields(section):
        value = getattr(section, f.name)
        if f.metadata.get("env") == variable:
            return value
        if isinstance(value, _Section):
            found = _lookup(value, variable)
            if found is not _MISSING:
                return found
    return _MISSING


@dataclass(frozen=True)
class DatabaseSettings(_Section):
    """PostgreSQL: a URL, or Cloud SQL through the connector; the per-instance pool."""

    url: str | None = _env("DATABASE_URL", secret=True)  # may hold the password
    instance_connection_name: str | None = _env("INSTANCE_CONNECTION_NAME")
    name: str = _env("DB_NAME", "verification")
    user: str | None = _env("DB_USER")
    password: str | None = _env("DB_PASSWORD", secret=True)
    iam_auth: bool = _env("DB_IAM_AUTH", False, read=_flag)
    pool_size: int = _env("DB_POOL_SIZE", 2, read=_integer(1))
    max_overflow: int = _env("DB_MAX_OVERFLOW", 2, read=_integer(0))

    def _check(self, r: _Reader) -> None:
        if not self.url and not self.instance_connection_name:
            raise ConfigError("DATABASE_URL", "set DATABASE_URL, or INSTANCE_CONNECTION_NAME for Cloud SQL")
        if self.url and not self.url.startswith("postgresql+pg8000://"):
            raise ConfigError("DATABASE_URL", "must start with postgresql+pg8000://")
        if self.instance_connection_name and not self.url:
            if not self.user:
                raise ConfigError("DB_USER", "required with INSTANCE_CONNECTION_NAME")
            if not self.iam_auth and not self.password:
                raise ConfigError("DB_PASSWORD", "required unless DB_IAM_AUTH=true")

    @classmethod
    def for_schema_owner(cls, env: Mapping[str, str] | None = None) -> DatabaseSettings:
        """The deploy-time schema step's connection: only the connection variables are read
        (the deploy host needs none of the functions' settings), on a one-connection pool."""
        env = os.environ if env is None else env
        wanted = ("DATABASE_URL", "INSTANCE_CONNECTION_NAME", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_IAM_AUTH")
        return cls.from_env({**{k: env[k] for k in wanted if k in env},
                             "DB_POOL_SIZE": "1", "DB_MAX_OVERFLOW": "0"})


# How far ahead a timer may be set: Cloud Tasks refuses a task scheduled more than 720 h ahead
# (InvalidArgument), so a deadline past it could only be parked, never delivered.
TIMER_HORIZON = timedelta(hours=720)


@dataclass(frozen=True)
class LifecycleSettings(_Section):
    """A session's clock: the window, reminders, grace periods, the age rule, call leases."""

    verification_window: timedelta = _env("VERIFICATION_WINDOW", timedelta(hours=72), read=_duration)
    reminder_offsets: tuple[timedelta, ...] = _env("REMINDER_OFFSETS", (timedelta(hours=24),), read=_durations)
    sweep_grace: timedelta = _env("SWEEP_GRACE", timedelta(minutes=5), read=_duration)
    # How long an email or refund call may be in flight before another attempt may take it
    # over (longer than a send can take: a shorter lease could send twice).
    email_lease: timedelta = _env("EMAIL_LEASE", timedelta(minutes=5), read=_duration)
    minimum_age: int = _env("MINIMUM_AGE", 21, read=_integer(1))
    decision_grace: timedelta = _env("DECISION_GRACE", timedelta(hours=24), read=_duration)
    max_order_age: timedelta = _env("MAX_ORDER_AGE", timedelta(days=7), read=_duration)

    def _check(self, r: _Reader) -> None:
        if self.verification_window > TIMER_HORIZON:
            raise ConfigError("VERIFICATION_WINDOW", "must be at most 720h: Cloud Tasks sets no timer further ahead")
        if self.verification_window <= max(self.reminder_offsets, default=timedelta(0)):
            raise ConfigError("REMINDER_OFFSETS", "every reminder must come before the deadline")


@dataclass(frozen=True)
class RetentionSettings(_Section):
    """How long data is kept: a closed session's customer email, id and provider link are
    erased `sessions` after it closed (our own close time), and an open one is closed and
    erased `sessions` after its deadline (shared.handlers.retention), and the audit trail of
    reads keeps an entry `sessions`; webhook idempotency rows are kept `webhooks` (longer than
    any sender retries: they are the only replay guard of the senders that sign no timestamp);
    delivered outbox rows, processed message ids and finished local deliveries `replay` (Pub/Sub
    keeps a message for 7 days at most)."""

    sessions: timedelta = _env("RETENTION", timedelta(days=90), read=_duration)
    webhooks: timedelta = _env("WEBHOOK_RETENTION", timedelta(days=30), read=_duration)
    replay: timedelta = _env("REPLAY_RETENTION", timedelta(days=8), read=_duration)


def _reverify_after(r: _Reader, variable: str, default: timedelta | None) -> timedelta | None:
    """A duration, or `0`: verify once is off (every order asks again)."""
    value = r.text(variable)
    if value is None:
        return default
    if value.strip() == "0":
        return None
    return parse_duration(value, variable)


@dataclass(frozen=True)
class ReuseSettings(_Section):
    """Verify once (DESIGN.md 3b): how long a returning customer's verification is reused
    (`REVERIFY_AFTER`, `0` turns it off) and the pepper of the customer key
    (`CUSTOMER_KEY_SECRET`), which the functions that compute a key require while reuse is on
    (`pepper()`); it never reaches the database. `returning_email` (`RETURNING_CUSTOMER_EMAIL`,
    off by default) sends a returning customer a short "no action needed" email."""

    reverify_after: timedelta | None = _env("REVERIFY_AFTER", timedelta(days=365), read=_reverify_after)
    key_secret: str | None = _env("CUSTOMER_KEY_SECRET", secret=True)
    returning_email: bool = _env("RETURNING_CUSTOMER_EMAIL", False, read=_flag)

    @property
    def enabled(self) -> bool:
        return self.reverify_after is not None

    def pepper(self) -> bytes | None:
        """The pepper while reuse is on (ConfigError naming CUSTOMER_KEY_SECRET when unset);
        None when it is off."""
        if not self.enabled:
            return None
        if not self.key_secret:
            raise ConfigError("CUSTOMER_KEY_SECRET", "is required while REVERIFY_AFTER is not 0 (verify once)")
        return self.key_secret.encode()


@dataclass(frozen=True)
class VeriffSettings(_Section):
    """Veriff: the API (sessions) and the shared secret its webhooks are signed with.
    `base_url` "local" means the local stack's provider page at `local_verify_url`."""

    api_key: str | None = _env("VERIFF_API_KEY", secret=True)
    shared_secret: str | None = _env("VERIFF_SHARED_SECRET", secret=True)
    base_url: str = _env("VERIFF_BASE_URL", "https://stationapi.veriff.com", read=_url)
    local_verify_url: str = _env("LOCAL_VERIFY_URL", "http://127.0.0.1:8080/verify")
    on_cloud_run: bool = _env("K_SERVICE", False, read=_present)  # the local stand-in is refused there

    def _check(self, r: _Reader) -> None:
        if self.api_key and self.base_url.lower() != "local":
            _require_https("VERIFF_BASE_URL", self.base_url)


@dataclass(frozen=True)
class ProviderSettings(_Section):
    """The ID providers (`shared.providers.registry.PROVIDERS`): which one new sessions' links
    are created with (`ID_PROVIDER`, one of the table's names), and each provider's section.
    Every provider's webhooks are served whichever is chosen: a session keeps the provider
    its link was created with."""

    id_provider: str = _env("ID_PROVIDER", "veriff")
    veriff: VeriffSettings = _section(VeriffSettings)

    def _check(self, r: _Reader) -> None:
        from shared.providers import registry  # the table imports the providers' modules, which import this

        if self.id_provider not in registry.PROVIDERS:
            raise ConfigError("ID_PROVIDER", f"is one of {', '.join(registry.PROVIDERS)}")


def _secrets(r: _Reader, variable: str, default) -> tuple[str, ...]:
    """One secret, or two comma-separated during a rotation (the new one first)."""
    value = r.text(variable)
    parts = tuple(p for p in (s.strip() for s in (value or "").split(",")) if p)
    if len(parts) > 2:
        raise ConfigError(variable, "at most two comma-separated secrets (during a rotation)")
    return parts


@dataclass(frozen=True)
class ShopifySettings(_Section):
    """Shopify (DESIGN.md 4, 4b): the shop, the app's client secret(s) its webhooks are signed
    with, and the Admin GraphQL API (custom app access token, pinned API version). Unset shop
    domain: the route and the connector are disabled. `admin_url` defaults to the shop's own
    endpoint; http only to 127.0.0.1 (stand-ins)."""

    shop_domain: str | None = _env("SHOPIFY_SHOP_DOMAIN")
    client_secrets: tuple[str, ...] = _env("SHOPIFY_CLIENT_SECRET", (), read=_secrets, secret=True)
    admin_token: str | None = _env("SHOPIFY_ADMIN_TOKEN", secret=True)
    api_version: str = _env("SHOPIFY_API_VERSION", "2025-10")
    admin_url_setting: str | None = _env("SHOPIFY_ADMIN_URL")
    notify_customer: bool = _env("SHOPIFY_NOTIFY_CUSTOMER", False, read=_flag)
    accept_test_orders: bool = _env("SHOPIFY_ACCEPT_TEST_ORDERS", False, read=_flag)

    @property
    def enabled(self) -> bool:
        return bool(self.shop_domain)

    @property
    def admin_url(self) -> str:
        return (self.admin_url_setting
                or f"https://{self.shop_domain}/admin/api/{self.api_version}/graphql.json").rstrip("/")

    def _check(self, r: _Reader) -> None:
        if self.admin_url_setting:
            _require_https("SHOPIFY_ADMIN_URL", self.admin_url_setting)


@dataclass(frozen=True)
class WooCommerceSettings(_Section):
    """WooCommerce (DESIGN.md 4, 4b): the store's URL (REST v3 under `/wp-json/wc/v3`), the
    webhook secret and the REST API consumer key and secret. Unset URL: disabled."""

    url: str | None = _env("WOOCOMMERCE_URL")
    webhook_secret: str | None = _env("WOOCOMMERCE_WEBHOOK_SECRET", secret=True)
    consumer_key: str | None = _env("WOOCOMMERCE_CONSUMER_KEY", secret=True)
    consumer_secret: str | None = _env("WOOCOMMERCE_CONSUMER_SECRET", secret=True)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def _check(self, r: _Reader) -> None:
        if self.url:
            _require_https("WOOCOMMERCE_URL", self.url)


@dataclass(frozen=True)
class OutcomeWebhookSettings(_Section):
    """Signed outcome webhooks to any store (DESIGN.md 4b): unset URL, none are sent."""

    url: str | None = _env("OUTCOME_WEBHOOK_URL")
    secret: bytes | None = _env("OUTCOME_WEBHOOK_SECRET", secret=True, read=_webhook_secret)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def _check(self, r: _Reader) -> None:
        # The secret is required where webhooks are signed (the `order-actions` subscriber, when
        # it builds the connector), not here: every function that moves a session decides from
        # the URL alone which store actions to write, and needs no secret for that.
        if self.url:
            _require_https("OUTCOME_WEBHOOK_URL", self.url)


@dataclass(frozen=True)
class StoreSettings(_Section):
    """Every store connector's section (`shared.stores`)."""

    shopify: ShopifySettings = _section(ShopifySettings)
    woocommerce: WooCommerceSettings = _section(WooCommerceSettings)
    outcome_webhook: OutcomeWebhookSettings = _section(OutcomeWebhookSettings)


@dataclass(frozen=True)
class InboundSettings(_Section):
    """The webhook intake: each sender's secret, the body limit, and when it relays."""

    order_webhook_secret: bytes | None = _env("ORDER_WEBHOOK_SECRET", secret=True, read=_webhook_secret)
    lightspeed_client_secret: str | None = _env("LIGHTSPEED_CLIENT_SECRET", secret=True)
    max_body_bytes: int = _env("MAX_BODY_BYTES", 1_048_576, read=_integer(1))
    relay: IntakeRelay = _env("INTAKE_RELAY", IntakeRelay.AFTER_RESPONSE, read=_choice(IntakeRelay))
    providers: ProviderSettings = _section(ProviderSettings)
    stores: StoreSettings = _section(StoreSettings)


@dataclass(frozen=True)
class TasksSettings(_Section):
    """Timers: Cloud Tasks (`cloud`) or the local stack's PostgreSQL queue (`local`)."""

    backend: TasksBackend = _env("TASKS_BACKEND", TasksBackend.CLOUD, read=_choice(TasksBackend))
    project: str | None = _env("GOOGLE_CLOUD_PROJECT")
    location: str = _env("TASKS_LOCATION", "us-central1")
    queue: str = _env("TASKS_QUEUE", "verification-timers")
    timer_url: str | None = _env("TIMER_URL")
    service_account: str | None = _env("TASKS_SERVICE_ACCOUNT")
    emulator_host: str | None = _env("CLOUD_TASKS_EMULATOR_HOST")

    def _check(self, r: _Reader) -> None:
        if self.backend == TasksBackend.CLOUD:
            for name, value in (("GOOGLE_CLOUD_PROJECT", self.project), ("TIMER_URL", self.timer_url)):
                if not value:
                    raise ConfigError(name, "required when TASKS_BACKEND=cloud")
        if self.backend == TasksBackend.LOCAL and not self.timer_url:
            raise ConfigError("TIMER_URL", "required when TASKS_BACKEND=local")


@dataclass(frozen=True)
class EventsSettings(_Section):
    """Domain events: Pub/Sub (`pubsub`) or pushed to local subscriber urls (`local`);
    a message older than `max_message_age` is acknowledged unprocessed."""

    backend: EventsBackend = _env("EVENTS_BACKEND", EventsBackend.PUBSUB, read=_choice(EventsBackend))
    project: str | None = _env("GOOGLE_CLOUD_PROJECT")
    local_subscriber_urls: Mapping[str, str] = _env("LOCAL_SUBSCRIBER_URLS", factory=dict, read=_mapping)
    max_message_age: timedelta = _env("MAX_MESSAGE_AGE", timedelta(days=3), read=_duration)

    def _check(self, r: _Reader) -> None:
        if self.backend == EventsBackend.PUBSUB and not self.project:
            raise ConfigError("GOOGLE_CLOUD_PROJECT", "required when EVENTS_BACKEND=pubsub")


@dataclass(frozen=True)
class EmailSettings(_Section):
    """Customer emails: the backend (`smtp`, `sendgrid`, `console`), sender and store wording.
    `on_cloud_run` (K_SERVICE is set) makes the factory refuse `console`."""

    backend: EmailBackend = _env("EMAIL_BACKEND", EmailBackend.CONSOLE, read=_choice(EmailBackend))
    sender: str = _env("EMAIL_FROM", "verify@example.com")
    store_name: str = _env("STORE_NAME", "Our store")
    store_timezone: str = _env("STORE_TIMEZONE", "UTC", read=_timezone)
    smtp_host: str = _env("SMTP_HOST", "127.0.0.1")
    smtp_port: int = _env("SMTP_PORT", 25, read=_integer(1))
    smtp_user: str | None = _env("SMTP_USER")
    smtp_password: str | None = _env("SMTP_PASSWORD", secret=True)
    smtp_starttls: bool = _env("SMTP_STARTTLS", True, read=_flag)
    sendgrid_api_key: str | None = _env("SENDGRID_API_KEY", secret=True)
    sendgrid_base_url: str = _env("SENDGRID_BASE_URL", "https://api.sendgrid.com", read=_url)
    on_cloud_run: bool = _env("K_SERVICE", False, read=_present)

    def _check(self, r: _Reader) -> None:
        if self.backend == EmailBackend.SENDGRID:
            if not self.sendgrid_api_key:
                raise ConfigError("SENDGRID_API_KEY", "required when EMAIL_BACKEND=sendgrid")
            _require_https("SENDGRID_BASE_URL", self.sendgrid_base_url)


@dataclass(frozen=True)
class RefundSettings(_Section):
    """Refunds: a store's HTTP API (`http`) or by hand from the console (`manual`)."""

    backend: RefundBackend = _env("REFUND_BACKEND", RefundBackend.MANUAL, read=_choice(RefundBackend))
    api_url: str | None = _env("REFUND_API_URL")
    api_token: str | None = _env("REFUND_API_TOKEN", secret=True)

    def _check(self, r: _Reader) -> None:
        if self.backend == RefundBackend.HTTP:
            for name, value in (("REFUND_API_URL", self.api_url), ("REFUND_API_TOKEN", self.api_token)):
                if not value:
                    raise ConfigError(name, "required when REFUND_BACKEND=http")
            _require_https("REFUND_API_URL", self.api_url)


CONSOLE_SECRET_MIN = 32  # it keys the CSRF tokens: as long as a random 32-byte key's base64 at least
CONSOLE_DEV_TOKEN_MIN = 32  # the local sign-in's secret: devstack.run makes one of 43 (token_urlsafe(32))


@dataclass(frozen=True)
class ConsoleSettings(_Section):
    """The operator console: IAP (`iap`) or the local stack's `dev` sign-in (with the token only
    the local user has), its CSRF secret, and the local intake the provider page posts to."""

    auth: ConsoleAuth = _env("CONSOLE_AUTH", ConsoleAuth.IAP, read=_choice(ConsoleAuth))
    iap_audience: str | None = _env("IAP_AUDIENCE")
    iap_public_keys_url: str = _env("IAP_PUBLIC_KEYS_URL", "https://www.gstatic.com/iap/verify/public_key")
    secret: str | None = _env("CONSOLE_SECRET", secret=True)
    # CONSOLE_AUTH=dev: the secret of the URL the local stack prints (`/sessions?dev_token=...`);
    # a tunnel to 127.0.0.1 (`ssh -R`, ngrok TCP) passes every other check, not this one.
    dev_token: str | None = _env("CONSOLE_DEV_TOKEN", secret=True)
    local_intake_url: str | None = _env("LOCAL_INTAKE_URL")
    # Who IAP admits and may then read (viewers) or act (operators); the manual verify may be
    # kept to fewer (verifiers; unset: every operator). Required with CONSOLE_AUTH=iap.
    operators: tuple[str, ...] = _env("CONSOLE_OPERATORS", (), read=_people)
    viewers: tuple[str, ...] = _env("CONSOLE_VIEWERS", (), read=_people)
    verifiers: tuple[str, ...] = _env("CONSOLE_VERIFIERS", (), read=_people)

    def _check(self, r: _Reader) -> None:
        if not r.text("K_SERVICE"):
            if self.auth == ConsoleAuth.DEV and len(self.dev_token or "") < CONSOLE_DEV_TOKEN_MIN:
                raise ConfigError("CONSOLE_DEV_TOKEN", f"is required with CONSOLE_AUTH=dev, at least "
                                  f"{CONSOLE_DEV_TOKEN_MIN} random characters (devstack.run makes one per run)")
            return
        if self.auth == ConsoleAuth.DEV:
            raise ConfigError("CONSOLE_AUTH", "dev is refused on Cloud Run (K_SERVICE is set)")
        if not self.iap_public_keys_url.startswith("https://"):
            raise ConfigError("IAP_PUBLIC_KEYS_URL", "must be an https:// URL on Cloud Run")
        if self.secret is not None and len(self.secret) < CONSOLE_SECRET_MIN:
            raise ConfigError("CONSOLE_SECRET", f"must be at least {CONSOLE_SECRET_MIN} characters on Cloud Run")


@dataclass(frozen=True)
class Settings(_Section):
    """Every setting the functions read, in sections. Build with `Settings.from_env()`;
    each section validates itself there, once. A factory takes its section
    (`make_scheduler(settings.tasks, db)`); `require` finds a variable in any section."""

    database: DatabaseSettings = _section(DatabaseSettings)
    lifecycle: LifecycleSettings = _section(LifecycleSettings)
    retention: RetentionSettings = _section(RetentionSettings)
    reuse: ReuseSettings = _section(ReuseSettings)
    inbound: InboundSettings = _section(InboundSettings)
    tasks: TasksSettings = _section(TasksSettings)
    events: EventsSettings = _section(EventsSettings)
    email: EmailSettings = _section(EmailSettings)
    refunds: RefundSettings = _section(RefundSettings)
    console: ConsoleSettings = _section(ConsoleSettings)


@dataclass(frozen=True)
class Runtime:
    """What the platform says about this process, read where no settings may be built yet
    (at import, before any validation; never raises): the function Cloud Functions serves
    here, the project for trace ids, the log level, and the operator CLI's local state."""

    function_targets: tuple[str, ...] = ()
    project: str | None = None
    log_level: str = "INFO"
    local_state_dir: str | None = None
    operator: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Runtime:
        r = _Reader(os.environ if env is None else env)
        return cls(
            function_targets=tuple(t for t in (r.text("FUNCTION_TARGET"), r.text("GOOGLE_FUNCTION_TARGET")) if t),
            project=r.text("GOOGLE_CLOUD_PROJECT"),
            log_level=(r.text("LOG_LEVEL") or "INFO").upper(),
            local_state_dir=r.text("LOCAL_STATE_DIR"),
            operator=r.text("OPERATOR"),
        )


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
