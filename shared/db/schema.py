"""Every table, defined once on one MetaData (DESIGN.md section 7)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.domain import keys
from shared.domain.model import (
    EFFECT_OPEN,
    EMAIL_STATES,
    EffectState,
    STORE_ACTION_OPEN,
    StoreActionState,
    OPEN,
    REFUND_OPEN,
    Email,
    EmailClaim,
    RefundStatus,
    Status,
    TERMINAL,
    TimerKind,
    TimerState,
)
from shared.domain.reasons import NOTE_MAX
from shared.domain.rows import OutboxKind
from shared.stores.base import StoreActionKind

metadata = MetaData()

NOW = text("now()")
# The key rule (shared.domain.keys), naming no source, so a new store needs no migration: a
# generic key does not begin like a namespaced one (`<word>:`); any other source's key is
# `<source>:<id>`, for a source named in lower-case words. Migration v16 spells the same text.
KEY_MATCHES_SOURCE = (f"CASE WHEN source = '{keys.GENERIC}' THEN order_id !~ '^{keys.PREFIX.pattern}' "
                      f"ELSE source ~ '^{keys.SOURCE_NAME}$' "
                      f"AND starts_with(order_id, source || '{keys.SEPARATOR}') END")
_KIND = re.compile(r"[a-z_.]+")


def one_of(column: str, kinds: Iterable[StrEnum], name: str) -> CheckConstraint:
    """CHECK that `column` holds one of the enum's values: the table follows the enum."""
    values = tuple(str(kind) for kind in kinds)
    if not all(_KIND.fullmatch(value) for value in values):  # inlined into DDL: plain words only
        raise ValueError(f"{name}: a kind must be lower-case words")
    return CheckConstraint(f"{column} IN {values!r}", name=name)


def sql_in(column: str, values: Iterable[StrEnum]) -> str:
    """`column IN (...)` for a domain set, in its enum's order: SQL predicates and partial
    indexes follow the domain's sets instead of spelling them again."""
    ordered = sorted(values, key=lambda value: list(type(value)).index(value))
    if not ordered or not all(_KIND.fullmatch(str(value)) for value in ordered):
        raise ValueError(f"{column}: a set of lower-case words is needed")
    return f"{column} IN ({', '.join(repr(str(value)) for value in ordered)})"


def allowed_values(constraint: CheckConstraint) -> set[str]:
    """The values a `one_of` constraint allows, read back from its SQL."""
    return set(re.findall(r"'([^']*)'", str(constraint.sqltext)))


def _tstz(name: str, **kwargs) -> Column:
    return Column(name, DateTime(timezone=True), **kwargs)


verification_sessions = Table(
    "verification_sessions",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("source", Text, nullable=False),
    Column("customer_email", Text),  # erased (NULL) RETENTION after the session closed

    Column("customer_id", Text),
    Column("order_total", Numeric(12, 2)),
    Column("currency", Text),
    Column("status", Text, nullable=False, server_default="pending"),
    _tstz("ordered_at", nullable=False),  # receipt: where the window starts (not the store's time)
    _tstz("deadline", nullable=False),
    Column("deadline_version", Integer, nullable=False, server_default="1"),
    _tstz("decided_at"),
    # v22: the ID provider's session behind the link and its URL (named for the provider until
    # then), and which provider (`shared.providers.registry.PROVIDERS`) the link was created
    # with: '' until a link is created (rows from before v22: the one provider there was).
    Column("provider_session_id", Text),
    Column("provider_url", Text),
    Column("provider", Text, nullable=False, server_default=""),
    Column("refund_status", Text),
    _tstz("refund_claimed_at"),  # the lease of the refund call in flight (see claims.claim_refund)
    # v21: when a refund was last asked of REFUND_BACKEND for this session: set by the transition
    # that owes one (`Transition.refund`, in `apply_effects`), moved on by each re-drive of a lost
    # request. NULL: none was asked (none owed, or the store's own connector refunds).
    _tstz("refund_requested_at"),
    # v25: when the sweeper last re-drove this session's link email, never claimed (`redrive`):
    # a link is re-enqueued at most once a lease, not on every sweep while its message waits.
    _tstz("link_redriven_at"),
    # Set when the customer submitted before the deadline: expiry waits for the decision until then.
    _tstz("decision_hold_until"),
    _tstz("erased_at"),  # when the customer's email and id were erased (shared.db.retention)
    # v19: when the session reached a terminal status, by our own clock (never the provider's
    # `decisionTime`, which may lie in the future): retention counts from it.
    _tstz("closed_at"),
    # v14, verify once (shared.domain.customers): the order's keyed customer hashes, set only for
    # an order with a customer id while verify once is on; an approval records them, an underage
    # decline revokes by them. Erased with the email.
    Column("customer_key", Text),
    Column("email_key", Text),
    _tstz("created_at", nullable=False, server_default=NOW),
    _tstz("updated_at", nullable=False, server_default=NOW),
    # v13: the store's own facts: when the order was placed at the store (its own clock), and
    # the id its API needs (Shopify's order GID) when that is not the key's own id.
    _tstz("store_ordered_at"),
    Column("store_ref", Text),
    one_of("status", Status, "verification_sessions_status"),
    one_of("refund_status", RefundStatus, "verification_sessions_refund_status"),
    # The key encodes the source (shared.domain.keys): a Lightspeed sale's key is
    # `lightspeed:<sale id>` and no generic key looks like one, whichever writer (the PL/pgSQL
    # fast path included) inserts it.
    CheckConstraint(KEY_MATCHES_SOURCE, name="verification_sessions_key_source"),
)
# The deadline sweeper reads only pending sessions by deadline: keep that tiny.
Index(
    "verification_sessions_pending_deadline",
    verification_sessions.c.deadline,
    postgresql_where=verification_sessions.c.status == Status.PENDING,
)
# The operator console's keyset pages (migration v4): newest first, by status, by deadline
# for open sessions, by customer email (any case), and the few sessions whose refund is open.
Index("verification_sessions_created", verification_sessions.c.created_at.desc(),
      verification_sessions.c.order_id.desc())
Index("verification_sessions_status_created", verification_sessions.c.status,
      verification_sessions.c.created_at.desc(), verification_sessions.c.order_id.desc())
Index("verification_sessions_open_deadline", verification_sessions.c.deadline,
      verification_sessions.c.order_id,
      postgresql_where=verification_sessions.c.status.in_(OPEN))
Index("verification_sessions_email_lower", func.lower(verification_sessions.c.customer_email))  # v10: any case
Index("verification_sessions_refund_open", verification_sessions.c.order_id,
      postgresql_where=verification_sessions.c.refund_status.in_(REFUND_OPEN))

# Sessions whose refund was asked for and is not settled: the sweeper's re-drive reads only these
# (v17: by the request a refunding transition recorded, not by status, so an erased customer's
# cancelled order is among them and a store's cancellation never is).
REFUND_OWED = ("refund_requested_at IS NOT NULL "
               f"AND (refund_status IS NULL OR refund_status = '{RefundStatus.REQUESTED}')")
Index(
    "verification_sessions_refund_owed",
    verification_sessions.c.refund_requested_at,
    postgresql_where=text(REFUND_OWED),
)

# v19: closed sessions not yet erased, by the time they closed (the retention pass reads only
# these; `updated_at` stands in for a closed row without a close time, which none should be).
Index(
    "verification_sessions_to_erase",
    func.coalesce(verification_sessions.c.closed_at, verification_sessions.c.updated_at),
    postgresql_where=text(f"erased_at IS NULL AND {sql_in('status', TERMINAL)}"),
)

# v14, verify once (DESIGN.md 3b): one row per verified customer key, no email in clear, no date
# of birth, no provider data. `session_id` is the order whose verification it reuses.
verified_customers = Table(
    "verified_customers",
    metadata,
    Column("customer_key", Text, primary_key=True),
    Column("email_key", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    _tstz("verified_at", nullable=False),
    _tstz("expires_at", nullable=False),
)
Index("verified_customers_email", verified_customers.c.email_key)
Index("verified_customers_expires", verified_customers.c.expires_at)

# Every provider session the service created for an order: a decision binds only to these.
provider_sessions = Table(
    "provider_sessions",
    metadata,
    Column("order_id", Text, ForeignKey("verification_sessions.order_id"), nullable=False),
    Column("session_id", Text, nullable=False),
    Column("provider", Text, nullable=False),  # v22: the ID provider that created it
    _tstz("created_at", nullable=False, server_default=NOW),
    _tstz("superseded_at"),
    PrimaryKeyConstraint("order_id", "session_id"),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("provider", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("order_id", Text),
    Column("deliveries", Integer, nullable=False, server_default="1"),
    _tstz("received_at", nullable=False, server_default=NOW),
    _tstz("last_received_at", nullable=False, server_default=NOW),
    UniqueConstraint("provider", "event_id", name="webhook_events_provider_event_id"),
)

countdown_timers = Table(
    "countdown_timers",
    metadata,
    Column("order_id", Text, ForeignKey("verification_sessions.order_id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("reminder_index", Integer, nullable=False),
    Column("deadline_version", Integer, nullable=False),
    _tstz("fire_at", nullable=False),
    Column("task_name", Text, nullable=False, unique=True),
    Column("state", Text, nullable=False, server_default="scheduled"),
    _tstz("fired_at"),
    PrimaryKeyConstraint("order_id", "kind", "reminder_index", "deadline_version"),
    one_of("kind", TimerKind, "countdown_timers_kind"),
    one_of("state", TimerState, "countdown_timers_state"),
)

event_log = Table(
    "event_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("order_id", Text),
    Column("type", Text, nullable=False),
    _tstz("occurred_at", nullable=False, server_default=NOW),
    Column("actor", Text, nullable=False, server_default="system"),
    Column("request_id", Text),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)
Index("event_log_order", event_log.c.order_id, event_log.c.id)
# v11: approvals (age passed) ignored because their provider session had been superseded: an
# open session with one needs a person (the customer verified on an earlier link).
SUPERSEDED_APPROVAL = text("event_log.type = 'verification.decision_ignored' "
                           "AND (event_log.data->>'reason') = 'superseded_session' "
                           "AND (event_log.data->>'age_check') = 'passed'")
Index("event_log_superseded_approvals", event_log.c.order_id, postgresql_where=SUPERSEDED_APPROVAL)
# v11: paid orders that opened no session a person must look at: too old when they came
# (`order.stale`), a sale without a customer email.
SESSIONLESS_ORDER = text("(event_log.type = 'order.stale' OR (event_log.type = 'order.ignored' "
                         "AND (event_log.data->>'reason') = 'no_customer_email'))")
Index("event_log_sessionless", event_log.c.occurred_at, postgresql_where=SESSIONLESS_ORDER)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("order_id", Text),
    Column("payload", JSONB, nullable=False),
    _tstz("created_at", nullable=False, server_default=NOW),
    _tstz("available_at", nullable=False, server_default=NOW),
    _tstz("delivered_at"),
    # Set when delivery failed permanently (e.g. an invalid task name): kept, never retried.
    _tstz("dead_at"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    one_of("kind", OutboxKind, "outbox_kind"),
)
# Only undelivered rows are indexed, so a claim's cost does not grow with history:
# by due time for the sweeper, by order for a request's own relay.
Index(
    "outbox_undelivered",
    outbox.c.available_at,
    outbox.c.id,
    postgresql_where=outbox.c.delivered_at.is_(None) & outbox.c.dead_at.is_(None),
)
Index(
    "outbox_undelivered_order",
    outbox.c.order_id,
    postgresql_where=outbox.c.delivered_at.is_(None) & outbox.c.dead_at.is_(None),
)
# The console's order page and "needs attention" (migration v4).
Index("outbox_order", outbox.c.order_id, outbox.c.id)
Index("outbox_parked", outbox.c.order_id, postgresql_where=outbox.c.dead_at.isnot(None))

processed_messages = Table(
    "processed_messages",
    metadata,
    Column("subscriber", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    _tstz("processed_at", nullable=False, server_default=NOW),
    PrimaryKeyConstraint("subscriber", "message_id"),
)

# One row per customer email: claimed before sending, so each is sent at most once.
email_sends = Table(
    "email_sends",
    metadata,
    Column("order_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("reminder_index", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="1"),
    _tstz("claimed_at", nullable=False, server_default=NOW),
    _tstz("sent_at"),
    # When the sweeper last re-drove a claim left `sending` past its lease (migration v24): at
    # most once a lease, so a re-drive still queued is not enqueued again on every sweep.
    _tstz("redriven_at"),
    PrimaryKeyConstraint("order_id", "kind", "reminder_index"),
    one_of("state", EMAIL_STATES, "email_sends_state"),
    one_of("kind", Email, "email_sends_kind"),
)
# Claims in flight, for the console's "needs attention" (migration v4).
Index("email_sends_sending", email_sends.c.claimed_at,
      postgresql_where=email_sends.c.state == EmailClaim.SENDING)

# Analytics roll-ups, fed by `record_analytics` (one increment per event, deduplicated).
funnel_daily = Table(
    "funnel_daily",
    metadata,
    Column("day", Date, nullable=False),
    Column("metric", Text, nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("day", "metric"),
)

verify_durations = Table(
    "verify_durations",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("day", Date, nullable=False),
    Column("seconds", Integer, nullable=False),
    Column("bucket", Text, nullable=False),
)
Index("verify_durations_day", verify_durations.c.day)

# v13: one row per (order, store action, connector), written with the transition that asks for
# it (`due`), then the claim its handler takes before calling the store (`leased` until
# `lease_until`), and its outcome: `done` (with what the store now holds, `detail`, handed to
# later actions of the order), `failed` (the store's error code) or `skipped` (never called:
# the opposite action ran first, or the connector is no longer configured).
store_actions = Table(
    "store_actions",
    metadata,
    Column("order_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("connector", Text, nullable=False),
    Column("reason", Text),
    _tstz("requested_at", nullable=False),
    Column("state", Text, nullable=False, server_default="due"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    _tstz("lease_until"),
    _tstz("redriven_at"),
    _tstz("finished_at"),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error_code", Text),
    _tstz("created_at", nullable=False, server_default=NOW),
    PrimaryKeyConstraint("order_id", "action", "connector"),
    one_of("state", StoreActionState, "store_actions_state"),
    one_of("action", StoreActionKind, "store_actions_action"),
)
# The sweeper's re-drive reads only unfinished actions; "needs attention" only failed ones.
Index("store_actions_open", store_actions.c.created_at,
      postgresql_where=text(sql_in("state", STORE_ACTION_OPEN)))
Index("store_actions_failed", store_actions.c.order_id, postgresql_where=store_actions.c.state == "failed")

# v23: one row per (order, registered side effect), written with the transition
# that asks for it (`due`), the durable claim its performer leases before `perform` (`leased` until
# `lease_until`; `attempts` is the fencing number), and how it ended: `done`, or `failed` with its
# code. `effect` holds a name of `shared.effects.registry.EFFECTS`, checked in code, not by a CHECK:
# a new effect needs no migration.
effect_runs = Table(
    "effect_runs",
    metadata,
    Column("order_id", Text, nullable=False),
    Column("effect", Text, nullable=False),
    Column("reason", Text),
    Column("state", Text, nullable=False, server_default="due"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # `attempts` when staff last retried the run: its attempt budget counts the attempts after it,
    # while `attempts` (the fencing number) only ever grows.
    Column("retried_from", Integer, nullable=False, server_default="0"),
    _tstz("lease_until"),
    _tstz("redriven_at"),
    Column("error_code", Text),
    _tstz("created_at", nullable=False, server_default=NOW),
    _tstz("finished_at"),
    PrimaryKeyConstraint("order_id", "effect"),
    one_of("state", EffectState, "effect_runs_state"),
)
# The sweeper's re-drive reads only unfinished runs; the health numbers only failed ones.
Index("effect_runs_open", effect_runs.c.created_at, postgresql_where=text(sql_in("state", EFFECT_OPEN)))
Index("effect_runs_failed", effect_runs.c.effect, postgresql_where=effect_runs.c.state == EffectState.FAILED)

# v15: the last run of each sweep kind, one row a kind (`name`, e.g. "sweep"), upserted at the end
# of a run: when it finished, how long it took, and its report's counts (the numbers of its
# `sweep done` line; no customer data). The console's System page and `operator health` show it.
sweep_runs = Table(
    "sweep_runs",
    metadata,
    Column("name", Text, primary_key=True),
    _tstz("finished_at", nullable=False),
    Column("seconds", Numeric, nullable=False),
    Column("report", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)

# v17: an operator's note on the event that records their action (issue 24). The event and its
# message carry only the reason code; the note (at most NOTE_MAX characters) is kept here alone:
# never published or exported, read only by the console's role, deleted with the customer
# (forget, and retention once the session closed longer ago than RETENTION).
operator_notes = Table(
    "operator_notes",
    metadata,
    Column("event_id", UUID(as_uuid=False), ForeignKey("event_log.event_id", name="operator_notes_event_id_fkey"),
           primary_key=True),
    Column("order_id", Text, nullable=False),
    Column("note", Text, nullable=False),
    _tstz("created_at", nullable=False, server_default=NOW),
    CheckConstraint(f"char_length(note) BETWEEN 1 AND {NOTE_MAX}", name="operator_notes_note_length"),
)
Index("operator_notes_order", operator_notes.c.order_id)


# v18: who read customer data (issue 24): each console page and CLI read that shows an order, a
# list or a search, written before the data is returned. `actor` is `operator:<IAP-verified email>`
# or `cli:<database user> (<--by>)`; `order_id` the order viewed or the order id searched for;
# `email_key` the keyed hash (`customers.email_key`, pepper CUSTOMER_KEY_SECRET) of an email
# searched for, never the email; `detail` the non-personal rest (filters, page, `json`). Kept
# RETENTION (the sweep deletes older rows); the console inserts and reads, nobody updates.
read_audit = Table(
    "read_audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    _tstz("at", nullable=False, server_default=NOW),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("order_id", Text),
    Column("email_key", Text),
    Column("detail", Text, nullable=False, server_default=""),
)
Index("read_audit_at", read_audit.c.at)
Index("read_audit_order", read_audit.c.order_id, read_audit.c.id, postgresql_where=read_audit.c.order_id.isnot(None))
Index("read_audit_email", read_audit.c.email_key, read_audit.c.id,
      postgresql_where=read_audit.c.email_key.isnot(None))

# The local stack's durable queue of HTTP deliveries (TASKS_BACKEND=local timers and
# EVENTS_BACKEND=local messages): see shared.db.local_queue.
local_tasks = Table(
    "local_tasks",
    metadata,
    Column("name", Text, primary_key=True),
    Column("queue", Text, nullable=False, server_default="timers"),  # "timers", or a message's topic
    Column("url", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSONB),  # a message's CloudEvent headers; NULL for a timer
    _tstz("schedule_time", nullable=False),
    _tstz("created_at", nullable=False, server_default=NOW),
    _tstz("next_attempt_at", nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    _tstz("first_attempt_at"),
    Column("last_status", Text),
    _tstz("done_at"),
    _tstz("deleted_at"),
)
Index(
    "local_tasks_due",
    local_tasks.c.next_attempt_at,
    postgresql_where=local_tasks.c.done_at.is_(None) & local_tasks.c.deleted_at.is_(None),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    _tstz("applied_at", nullable=False, server_default=NOW),
)
