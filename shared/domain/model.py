"""Session lifecycle (DESIGN.md section 3) as pure data and functions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    IN_REVIEW = "in_review"
    VERIFIED = "verified"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.VERIFIED, Status.DECLINED, Status.EXPIRED, Status.CANCELLED})
OPEN = (Status.PENDING, Status.IN_REVIEW)


class RefundStatus(StrEnum):
    """A session's refund once one was asked for (`refund_status`; NULL before)."""

    REQUESTED = "requested"
    REFUNDED = "refunded"
    FAILED = "failed"
    MANUAL = "manual"


REFUND_OPEN = (RefundStatus.REQUESTED, RefundStatus.MANUAL, RefundStatus.FAILED)  # not settled yet
REFUND_NEEDS_OPERATOR = (RefundStatus.MANUAL, RefundStatus.FAILED)


class Decision(StrEnum):
    """What the ID provider said (each provider's module maps its own codes to these)."""

    APPROVED = "approved"
    DECLINED = "declined"
    RESUBMISSION_REQUESTED = "resubmission_requested"
    EXPIRED = "expired"
    ABANDONED = "abandoned"
    REVIEW = "review"


class Event(StrEnum):
    ORDER_RECEIVED = "order.received"
    ORDER_DUPLICATE = "order.duplicate"
    ORDER_CANCELLED = "order.cancelled"
    VERIFICATION_REQUESTED = "verification.requested"
    APPROVED = "verification.approved"
    DECLINED = "verification.declined"
    RESUBMISSION_REQUESTED = "verification.resubmission_requested"
    PROVIDER_SESSION_EXPIRED = "verification.session_expired"
    IN_REVIEW = "verification.in_review"
    DECISION_IGNORED = "verification.decision_ignored"
    CANCEL_IGNORED = "order.cancel_ignored"
    REMINDER_DUE = "verification.reminder_due"
    EXPIRED = "verification.expired"
    DEADLINE_EXTENDED = "verification.deadline_extended"
    REFUND_REQUESTED = "refund.requested"
    REFUND_COMPLETED = "refund.completed"
    REFUND_FAILED = "refund.failed"
    REFUND_MANUAL = "refund.manual"
    EMAIL_SENT = "customer.email_sent"
    EMAIL_FAILED = "customer.email_failed"
    STARTED = "verification.started"
    SUBMITTED = "verification.submitted"
    ORDER_IGNORED = "order.ignored"
    ORDER_STALE = "order.stale"
    LINK_RESENT = "verification.link_resent"
    OUTBOX_RETRIED = "outbox.retried"
    # A store action's outcome (DESIGN.md 4b), from `shared.handlers.store_actions`.
    STORE_HELD = "store.held"
    STORE_RELEASED = "store.released"
    STORE_CANCELLED = "store.cancelled"
    STORE_FLAGGED = "store.flagged"
    STORE_NOTIFIED = "store.notified"  # the outcome webhook took the notification
    STORE_ACTION_FAILED = "store.action_failed"  # the store refused: its error code only
    STORE_ACTION_RETRIED = "store.action_retried"  # an operator asked the store again
    # Verify once (DESIGN.md 3b).
    REUSED = "verification.reused"  # a returning customer's order opened verified
    CUSTOMER_REVOKED = "customer.verification_revoked"  # a verified-customer record removed
    CUSTOMER_ERASED = "customer.erased"  # an operator's forget: who and how many, never what
    # A registered side effect's outcome (`shared.effects`, `shared.handlers.effects`).
    EFFECT_DONE = "effect.done"
    EFFECT_FAILED = "effect.failed"  # failed for good: its code only (never an error's text)
    EFFECT_RETRIED = "effect.retried"  # an operator asked a failed side effect again


class TimerKind(StrEnum):
    REMINDER = "reminder"
    DEADLINE = "deadline"


class StoreActionState(StrEnum):
    """A store action's row (`store_actions`): written with its transition (`due`), claimed before
    the call (`leased` until its lease ends), and how it ended: `done`, `failed` (the store's
    code), `skipped` (never called: the opposite action ran first, or no connector any more)."""

    DUE = "due"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


STORE_ACTION_OPEN = frozenset({StoreActionState.DUE, StoreActionState.LEASED})  # still to be done
STORE_ACTION_UNDONE = frozenset({StoreActionState.FAILED, StoreActionState.SKIPPED})  # ended without the store doing it


class EffectState(StrEnum):
    """A registered side effect's row (`effect_runs`, `shared.effects`): written with its transition
    (`due`), claimed before `perform` (`leased` until its lease ends, or until a retry's backoff
    ends), and how it ended: `done`, or `failed` (its code; retries used up, or a permanent failure)."""

    DUE = "due"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"


EFFECT_OPEN = frozenset({EffectState.DUE, EffectState.LEASED})  # still to be performed


class TimerState(StrEnum):
    SCHEDULED = "scheduled"
    FIRED = "fired"
    CANCELLED = "cancelled"


class OrderActionKind(StrEnum):
    REFUND = "refund"


class ProviderEventKind(StrEnum):
    """The customer's progress an ID provider reports (each provider's module maps its codes)."""

    STARTED = "started"
    SUBMITTED = "submitted"


PROVIDER_EVENTS = {ProviderEventKind.STARTED: Event.STARTED, ProviderEventKind.SUBMITTED: Event.SUBMITTED}


class Email(StrEnum):
    LINK = "link"
    REMINDER = "reminder"
    VERIFIED = "verified"
    DECLINED = "declined"
    EXPIRED = "expired"
    RETURNING = "returning"  # a returning customer's "no action needed" (RETURNING_CUSTOMER_EMAIL)


class EmailClaim(StrEnum):
    """What claiming one customer email found: the claim, another attempt's lease, or how it ended."""

    CLAIMED = "claimed"  # this attempt holds the lease now (new, or taken over past the lease)
    SENDING = "sending"  # another attempt holds the lease
    SENT = "sent"
    SKIPPED = "skipped"  # it could never be built or sent


class RefundClaim(StrEnum):
    """What claiming an order's refund call found: the claim, another attempt's lease, or its outcome."""

    CLAIMED = "claimed"
    REQUESTED = "requested"  # another attempt holds the lease
    REFUNDED = "refunded"
    FAILED = "failed"
    MANUAL = "manual"
    UNKNOWN = "unknown"  # no such order


# The states an email claim row holds (`email_sends.state`); CLAIMED is a claim's outcome, not a state.
EMAIL_STATES = (EmailClaim.SENDING, EmailClaim.SENT, EmailClaim.SKIPPED)


@dataclass(frozen=True)
class EmailSpec:
    """Everything one kind of customer email is: when it may go out, what it needs, what it counts.

    `subject` and the body templates `{template}.txt` / `{template}.html` (in
    `shared/emails/templates/`) use `string.Template` placeholders (see `shared.emails.render`)."""

    template: str
    subject: str
    sendable_in: frozenset[Status]  # the session statuses it may still be sent in
    needs_link: bool = False  # its body links to the provider's page (opened on demand)
    metric: str | None = None  # the funnel count one sent adds to
    may_expire: bool = False  # pointless once late: dropped past MAX_MESSAGE_AGE
    tells_shipping: bool = False  # its `$shipping` promises shipping only when the store was told to release

    def sendable(self, status: Status | str) -> bool:
        return status in self.sendable_in


_OPEN_ONLY = frozenset(OPEN)

# One row per kind (the only place a kind's rules live). Keyed by the kind's value, so a lookup
# takes the `kind` string a message carries.
EMAILS: dict[str, EmailSpec] = {
    Email.LINK: EmailSpec("link", "Action needed: verify your age for order $order_id", _OPEN_ONLY,
                          needs_link=True, metric="links_sent"),
    # Only while the customer has not verified: a session in review was submitted (or is a person's).
    Email.REMINDER: EmailSpec("reminder", "Reminder: verify your age for order $order_id",
                              frozenset({Status.PENDING}), needs_link=True, metric="reminders_sent",
                              may_expire=True),
    Email.VERIFIED: EmailSpec("verified", "Thank you: your age is verified for order $order_id",
                              frozenset({Status.VERIFIED}), tells_shipping=True),
    Email.DECLINED: EmailSpec("declined", "We could not verify your age for order $order_id",
                              frozenset({Status.DECLINED})),
    Email.EXPIRED: EmailSpec("expired", "Your order $order_id has been cancelled and will be refunded",
                             frozenset({Status.EXPIRED})),
    # A returning customer's order (DESIGN.md 3b), only with RETURNING_CUSTOMER_EMAIL on: no link,
    # no funnel count (the order is counted as `returning_customers` by its `verification.reused`).
    Email.RETURNING: EmailSpec("returning", "No action needed: your age is already verified for order $order_id",
                               frozenset({Status.VERIFIED}), tells_shipping=True),
}


def email_spec(kind: str) -> EmailSpec:
    """The spec of email `kind`; ValueError for a kind without one."""
    spec = EMAILS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ValueError(f"unknown email kind {kind!r}")
    return spec


@dataclass(frozen=True)
class Transition:
    """A move allowed only from `from_statuses`, with its side effects."""

    from_statuses: tuple[Status, ...]
    to_status: Status
    event: Event
    cancel_timers: bool = False
    refund: bool = False
    email: Email | None = None
    fresh_link: bool = False
    reason: str | None = None  # recorded on the event and the refund request
    # Registered side effects (`shared.effects.registry.EFFECTS`, by name) this move asks for:
    # each gets its durable claim (`effect_runs`) in the move's transaction and is performed by
    # the `order-actions` subscriber, once per order (`apply_effects` refuses an unknown name).
    effects: tuple[str, ...] = ()

    @property
    def refund_reason(self) -> str:
        return self.reason or str(self.to_status)

    @property
    def store_action(self) -> str | None:
        """The store action this transition asks for (`STORE_ACTION_AT`), None for none."""
        if self.to_status in self.from_statuses:  # pending -> pending (a fresh link) asks nothing
            return None
        if self.refund:  # a refund is owed (an erased customer's open order too): the store cancels and refunds
            return "cancel_and_refund"
        return STORE_ACTION_AT.get(self.to_status)


# The store action each status a transition moves to asks for (DESIGN.md section 3, 4b), by
# `shared.stores.base.StoreActionKind` value. `hold` is the intake's (a session opens pending).
STORE_ACTION_AT: dict[Status, str] = {
    Status.VERIFIED: "release",
    Status.EXPIRED: "cancel_and_refund",
    Status.DECLINED: "cancel_and_refund",
    Status.IN_REVIEW: "flag_for_review",
    Status.CANCELLED: "note_cancelled",  # the store (or staff) cancelled first: told, never refunded
}


DECISION_RULES: dict[Decision, Transition] = {
    Decision.APPROVED: Transition(OPEN, Status.VERIFIED, Event.APPROVED, cancel_timers=True, email=Email.VERIFIED),
    Decision.DECLINED: Transition(
        OPEN, Status.DECLINED, Event.DECLINED, cancel_timers=True, refund=True, email=Email.DECLINED
    ),
    Decision.RESUBMISSION_REQUESTED: Transition(
        OPEN, Status.PENDING, Event.RESUBMISSION_REQUESTED, fresh_link=True
    ),
    Decision.EXPIRED: Transition(
        (Status.PENDING,), Status.PENDING, Event.PROVIDER_SESSION_EXPIRED, fresh_link=True
    ),
    Decision.ABANDONED: Transition(
        (Status.PENDING,), Status.PENDING, Event.PROVIDER_SESSION_EXPIRED, fresh_link=True
    ),
    Decision.REVIEW: Transition((Status.PENDING,), Status.IN_REVIEW, Event.IN_REVIEW),
}


class SessionBinding(StrEnum):
    """Whether a provider's verification id is one the service created for the order."""

    CURRENT = "current"
    SUPERSEDED = "superseded"
    UNKNOWN = "unknown"


class AgeCheck(StrEnum):
    """The only trace an approval's date of birth leaves."""

    PASSED = "passed"
    UNDERAGE = "underage"
    MISSING = "missing"


def age_on(birth: date, day: date) -> int:
    """Completed years on `day`. Someone born on 29 February has their birthday
    on 1 March in a common year (so turns 21 on 1 March, not 28 February)."""
    birthday = (birth.month, birth.day)
    if birthday == (2, 29) and not _is_leap(day.year):
        birthday = (3, 1)
    return day.year - birth.year - ((day.month, day.day) < birthday)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def age_check(birth: date | None, day: date, minimum_age: int) -> AgeCheck:
    """The outcome for an approval: no (readable) date of birth is MISSING, never PASSED."""
    if birth is None or birth > day:
        return AgeCheck.MISSING
    return AgeCheck.PASSED if age_on(birth, day) >= minimum_age else AgeCheck.UNDERAGE


# What an approval does, by the age check's outcome (DESIGN.md section 3).
APPROVAL_RULES: dict[AgeCheck, Transition] = {
    AgeCheck.PASSED: DECISION_RULES[Decision.APPROVED],
    AgeCheck.UNDERAGE: Transition(
        OPEN, Status.DECLINED, Event.DECLINED, cancel_timers=True, refund=True, email=Email.DECLINED,
        reason="underage",
    ),
    AgeCheck.MISSING: Transition((Status.PENDING,), Status.IN_REVIEW, Event.IN_REVIEW, reason="age_missing"),
}


STORE_CANCEL = Transition(OPEN, Status.CANCELLED, Event.ORDER_CANCELLED, cancel_timers=True)

# An operator's forget closes the customer's open sessions; their store actions still run: the
# order was never verified, so it is cancelled and refunded (reason `erased`), never shipped.
ERASED = Transition(OPEN, Status.CANCELLED, Event.ORDER_CANCELLED, cancel_timers=True, refund=True,
                    reason="erased")

# Retention (`shared.handlers.retention`): an open session still open RETENTION after its
# deadline (a review nobody finished, an approval without a date of birth, a link never sent)
# is closed so its customer can be erased. Never verified, so the store's hold stays (the order
# never ships: the store is told it was cancelled, nothing is released) and no refund is made
# automatically: an in-review session is a person's to decide, never refunded by a timer. The
# refund is left `manual` for a person (the console's "needs attention"), so it is made once,
# by hand, whatever happened to the order outside the service meanwhile.
RETENTION_CLOSED = Transition(OPEN, Status.CANCELLED, Event.ORDER_CANCELLED, cancel_timers=True,
                              reason="retention")

# A returning customer's order (DESIGN.md 3b): opened verified, from no status (the session is
# inserted so); no link, no timers. Its effects go through `apply_effects` like any transition
# that reaches `verified`.
RETURNING_CUSTOMER = Transition((), Status.VERIFIED, Event.REUSED, reason="returning_customer")
# The same with its short "no action needed" email (RETURNING_CUSTOMER_EMAIL=true; off by default).
RETURNING_CUSTOMER_TOLD = replace(RETURNING_CUSTOMER, email=Email.RETURNING)

DEADLINE = Transition(
    (Status.PENDING,), Status.EXPIRED, Event.EXPIRED, cancel_timers=True, refund=True, email=Email.EXPIRED
)


# A deadline reached before the link email was ever sent: a person looks, never an automatic refund.
LINK_NOT_SENT = Transition((Status.PENDING,), Status.IN_REVIEW, Event.IN_REVIEW, reason="link_not_sent")


def applies(rule: Transition, status: Status | str) -> bool:
    """Whether `rule` moves a session that is in `status` (the table's rows)."""
    return Status(status) in rule.from_statuses


def deadline_for(received_at: datetime, window: timedelta) -> tuple[datetime, datetime]:
    """(start, deadline): the window starts at receipt, when the link can first be sent."""
    return received_at, received_at + window


def is_stale(ordered_at: datetime | None, received_at: datetime, max_order_age: timedelta) -> bool:
    """An order created longer than MAX_ORDER_AGE before receipt (an edited old sale, a replay)."""
    return ordered_at is not None and ordered_at < received_at - max_order_age


@dataclass(frozen=True)
class TimerSpec:
    kind: TimerKind
    reminder_index: int
    fire_at: datetime
    deadline_version: int

    def task_name(self, order_id: str) -> str:
        return task_name(order_id, self.kind, self.reminder_index, self.deadline_version)


def timers_for(start: datetime, deadline: datetime, offsets: tuple[timedelta, ...],
               version: int = 1) -> list[TimerSpec]:
    """One timer per reminder offset that falls before the deadline, plus the deadline."""
    timers = [
        TimerSpec(TimerKind.REMINDER, i, start + offset, version)
        for i, offset in enumerate(offsets)
        if start + offset < deadline
    ]
    timers.append(TimerSpec(TimerKind.DEADLINE, 0, deadline, version))
    return timers


def task_name(order_id: str, kind: str, reminder_index: int, deadline_version: int) -> str:
    """Deterministic Cloud Tasks id; the hash comes first to spread the key range."""
    digest = hashlib.sha256(f"{order_id}\x1f{kind}\x1f{reminder_index}\x1f{deadline_version}".encode()).hexdigest()
    return f"{digest[:32]}-{kind}-{reminder_index}-v{deadline_version}"


# Every transition the service takes (an operator's verify and cancel take DECISION_RULES[APPROVED]
# and STORE_CANCEL). The sets below are read from them: SQL is built from the sets
# (`shared.db.schema.sql_in`), never written again as literals (tests/unit/test_domain_sets.py).
TRANSITIONS = (*DECISION_RULES.values(), *APPROVAL_RULES.values(), STORE_CANCEL, DEADLINE, LINK_NOT_SENT)
# The statuses a refunding transition of TRANSITIONS closes a session in (every move into them owes
# a refund). An erasure (ERASED) owes one too, though it closes `cancelled` like STORE_CANCEL, which
# owes none: so which sessions are owed a refund is recorded by the rule that owes it
# (`apply_effects`, `refund_requested_at`), never read back from the status (the sweep's re-drive).
REFUNDABLE = frozenset(t.to_status for t in TRANSITIONS if t.refund)
# The email kinds whose body links to the provider's page.
LINKED_EMAILS = frozenset(Email(kind) for kind, spec in EMAILS.items() if spec.needs_link)
