"""Read queries for the operator console and CLI: session lists, one order's story, the daily funnel.

Lists are keyset-paginated (no OFFSET), each ordering served by an index of migration v4,
so a page costs the same at the millionth session as at the first.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Select, and_, any_, func, select, text, tuple_, union
from sqlalchemy.engine import Connection

from shared.db import operator_store
from shared.domain import keys
from shared.domain import model
from shared.domain.model import STORE_ACTION_OPEN, EmailClaim, Status
from shared.db.schema import (
    SESSIONLESS_ORDER,
    SUPERSEDED_APPROVAL,
    sql_in,
    countdown_timers,
    effect_runs,
    email_sends,
    event_log,
    funnel_daily,
    outbox,
    store_actions,
    verification_sessions as sessions,
    verified_customers,
)

# Constant predicates are written as literals so PostgreSQL can match the partial indexes.
OPEN = text(sql_in("verification_sessions.status", model.OPEN))
EMAIL_STUCK_AFTER = timedelta(minutes=10)
STORE_FAILING_AFTER = 5  # attempts of a store action still unfinished: "needs attention"
LIST_COLUMNS = (sessions.c.order_id, sessions.c.status, sessions.c.customer_email, sessions.c.deadline,
                sessions.c.created_at, sessions.c.refund_status)


@dataclass(frozen=True)
class SessionFilter:
    """What the sessions list shows. `query` is an order id (a session key, or a store's own id:
    every source's session for it), or an exact customer email."""

    status: str | None = None
    due_within: timedelta | None = None
    overdue: bool = False
    attention: bool = False
    query: str | None = None
    after: str | None = None  # the cursor of the previous page's last row
    limit: int = 50

    @property
    def by_deadline(self) -> bool:
        return self.overdue or self.due_within is not None

    def described(self) -> str:
        """The filters, for the audit trail of reads (no search term: that is recorded apart, an
        email only as its keyed hash)."""
        parts = [f"status={self.status}" if self.status else "",
                 f"due={int(self.due_within.total_seconds() // 3600)}h" if self.due_within is not None else "",
                 "overdue" if self.overdue else "", "attention" if self.attention else "",
                 "next page" if self.after else ""]
        return ", ".join(p for p in parts if p)


def _cursor(row: dict[str, Any], by_deadline: bool) -> str:
    key = row["deadline"] if by_deadline else row["created_at"]
    raw = json.dumps([key.isoformat(), row["order_id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for a cursor this module did not make."""
    try:
        when, order_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        # In UTC here: the driver converts it, and a time at the calendar's edge overflows.
        return datetime.fromisoformat(when).astimezone(timezone.utc), str(order_id)
    except (TypeError, OverflowError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError("not a page cursor") from exc


def _needing_attention(now: datetime):
    """Order ids an operator should look at: in review, manual refund open, parked or failing
    deliveries, an email claim left hanging, an open session whose customer was approved on a
    superseded provider session (DESIGN ignores that decision; a person can verify by hand), a
    store action the store refused or could not take five times, a registered side effect that
    failed for good (`effect.failed`). Each branch is served by a small index."""
    return union(
        select(sessions.c.order_id).where(sessions.c.status == Status.IN_REVIEW),
        select(event_log.c.order_id).join(sessions, sessions.c.order_id == event_log.c.order_id)
        .where(SUPERSEDED_APPROVAL, OPEN),
        select(sessions.c.order_id).where(sessions.c.refund_status.in_(model.REFUND_NEEDS_OPERATOR)),
        select(outbox.c.order_id).where(outbox.c.dead_at.isnot(None)),
        select(outbox.c.order_id).where(outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_(None),
                                        outbox.c.attempts > 0),
        select(email_sends.c.order_id).where(email_sends.c.state == EmailClaim.SENDING,
                                             email_sends.c.claimed_at < now - EMAIL_STUCK_AFTER),
        select(store_actions.c.order_id).where(text("store_actions.state = 'failed'")),
        # ... or the store has been unavailable for it five times running (still retried)
        select(store_actions.c.order_id).where(text(sql_in("store_actions.state", STORE_ACTION_OPEN)),
                                               store_actions.c.attempts >= STORE_FAILING_AFTER),
        select(effect_runs.c.order_id).where(text("effect_runs.state = 'failed'")),  # index effect_runs_failed
    )


def sessions_query(f: SessionFilter, now: datetime) -> Select:
    """The statement behind one page (a row more than the page, to know whether another follows)."""
    query = select(*LIST_COLUMNS)
    if f.status:
        query = query.where(sessions.c.status == f.status)
    if f.query:
        term = f.query.strip()
        if "@" in term:
            query = query.where(func.lower(sessions.c.customer_email) == term.lower())
        else:
            query = query.where(sessions.c.order_id.in_(keys.candidate_keys(term)))
    if f.attention:
        # `= ANY(ARRAY(...))`: the few ids are looked up by primary key, whatever the planner
        # guesses about their number (a join may choose to scan every session).
        query = query.where(sessions.c.order_id == any_(func.array(_needing_attention(now).scalar_subquery())))
    if f.by_deadline:
        query = query.where(OPEN)
        if f.overdue:
            query = query.where(sessions.c.deadline <= now)
        if f.due_within is not None:
            query = query.where(sessions.c.deadline > now, sessions.c.deadline <= now + f.due_within)
        key = (sessions.c.deadline, sessions.c.order_id)
        order = (sessions.c.deadline.asc(), sessions.c.order_id.asc())
    else:
        key = (sessions.c.created_at, sessions.c.order_id)
        order = (sessions.c.created_at.desc(), sessions.c.order_id.desc())
    if f.after:
        position = _decode_cursor(f.after)
        query = query.where(tuple_(*key) > position if f.by_deadline else tuple_(*key) < position)
    return query.order_by(*order).limit(f.limit + 1)


def list_sessions(conn: Connection, f: SessionFilter, now: datetime) -> tuple[list[dict[str, Any]], str | None]:
    """One page of sessions and the cursor of the next page (None on the last page)."""
    rows = [dict(r) for r in conn.execute(sessions_query(f, now)).mappings()]
    more = len(rows) > f.limit
    rows = rows[:f.limit]
    return rows, (_cursor(rows[-1], f.by_deadline) if more and rows else None)


def matching_orders(conn: Connection, text: str) -> list[dict[str, str]]:
    """The sessions an operator may mean by `text` (`order_id` key and `source` each): the
    session of that key, and every source's session whose own order id it is (a bare `123`
    finds generic order `123` and Lightspeed sale `lightspeed:123`, in that order)."""
    candidates = keys.candidate_keys(text)
    rows = conn.execute(select(sessions.c.order_id, sessions.c.source)
                        .where(sessions.c.order_id.in_(candidates))).mappings()
    return sorted((dict(r) for r in rows), key=lambda r: candidates.index(r["order_id"]))


def order_story(conn: Connection, order_id: str) -> dict[str, Any] | None:
    """Everything the order page and `status ORDER` show, or None for an unknown order."""
    session = conn.execute(select(sessions).where(sessions.c.order_id == order_id)).mappings().first()
    if session is None:
        return None
    events = conn.execute(
        select(event_log.c.id, event_log.c.event_id, event_log.c.type, event_log.c.occurred_at, event_log.c.actor,
               event_log.c.data)
        .where(event_log.c.order_id == order_id).order_by(event_log.c.id)).mappings()
    timers = conn.execute(
        select(countdown_timers.c.kind, countdown_timers.c.reminder_index, countdown_timers.c.deadline_version,
               countdown_timers.c.fire_at, countdown_timers.c.state, countdown_timers.c.fired_at)
        .where(countdown_timers.c.order_id == order_id)
        .order_by(countdown_timers.c.fire_at, countdown_timers.c.kind)).mappings()
    emails = conn.execute(
        select(email_sends.c.kind, email_sends.c.reminder_index, email_sends.c.state, email_sends.c.attempts,
               email_sends.c.claimed_at, email_sends.c.sent_at)
        .where(email_sends.c.order_id == order_id).order_by(email_sends.c.claimed_at)).mappings()
    deliveries = conn.execute(
        select(outbox.c.id, outbox.c.kind, outbox.c.created_at, outbox.c.available_at, outbox.c.delivered_at,
               outbox.c.dead_at, outbox.c.attempts, outbox.c.last_error,
               outbox.c.payload["topic"].astext.label("topic"),
               outbox.c.payload["attributes"]["type"].astext.label("message_type"),
               outbox.c.payload["name"].astext.label("task_name"))
        .where(outbox.c.order_id == order_id).order_by(outbox.c.id)).mappings()
    actions = conn.execute(
        select(store_actions.c.action, store_actions.c.connector, store_actions.c.state, store_actions.c.attempts,
               store_actions.c.requested_at, store_actions.c.finished_at, store_actions.c.lease_until,
               store_actions.c.error_code)
        .where(store_actions.c.order_id == order_id).order_by(store_actions.c.requested_at,
                                                              store_actions.c.action)).mappings()
    runs = conn.execute(
        select(effect_runs.c.effect, effect_runs.c.state, effect_runs.c.attempts, effect_runs.c.error_code,
               effect_runs.c.created_at, effect_runs.c.finished_at, effect_runs.c.lease_until)
        .where(effect_runs.c.order_id == order_id).order_by(effect_runs.c.created_at, effect_runs.c.effect)).mappings()
    events = [dict(r) for r in events]
    return {"session": dict(session), "events": events, "timers": [dict(r) for r in timers],
            "emails": [dict(r) for r in emails], "outbox": [dict(r) for r in deliveries],
            "store_actions": [dict(r) for r in actions], "effect_runs": [dict(r) for r in runs],
            "notes": operator_store.notes_of(conn, order_id),  # staff only: never in the events
            "returning": returning_customer(events), "record": customer_record(conn, session["customer_key"])}


def returning_customer(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How a returning customer's order was verified (DESIGN.md 3b): the order first verified on
    and the date its record ran until, from the `verification.reused` event; else None."""
    for event in events:
        if event["type"] == "verification.reused":
            data = event["data"]
            until = data.get("expires_at")
            return {"original_session": data.get("original_session"),
                    "until": datetime.fromisoformat(until) if until else None,
                    "text": returning_text(data)}
    return None


def returning_text(data: dict[str, Any]) -> str:
    """"verified: returning customer (first verified on order X, until DATE)"."""
    until = data.get("expires_at")
    day = datetime.fromisoformat(until).date().isoformat() if until else "?"
    return f"verified: returning customer (first verified on order {data.get('original_session')}, until {day})"


def customer_record(conn: Connection, customer_key: str | None) -> dict[str, Any] | None:
    """The verified-customer record this session's customer has now (None: none, or a guest)."""
    if not customer_key:
        return None
    row = conn.execute(
        select(verified_customers.c.session_id, verified_customers.c.verified_at, verified_customers.c.expires_at)
        .where(verified_customers.c.customer_key == customer_key)).mappings().first()
    return dict(row) if row else None


def unopened_order_events(conn: Connection, text: str, limit: int = 200) -> list[dict[str, Any]]:
    """What was recorded for an order that opened no session (a stale order, a sale without a
    customer email, a return), for every key `text` may mean; empty when nothing was."""
    rows = conn.execute(
        select(event_log.c.order_id, event_log.c.type, event_log.c.occurred_at, event_log.c.actor, event_log.c.data)
        .where(event_log.c.order_id.in_(keys.candidate_keys(text))).order_by(event_log.c.id).limit(limit)).mappings()
    return [dict(r) for r in rows]


SESSIONLESS_SHOWN = timedelta(days=14)  # how far back "needs attention" lists orders that opened no session


def sessionless_orders(conn: Connection, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
    """Paid orders received in the last SESSIONLESS_SHOWN that opened no session and need a
    person (`order.stale`, a sale without a customer email), newest first: `order_id`, `type`,
    `reason`, `occurred_at`. A sale opened later (its email added) is not one any more."""
    return [dict(r) for r in conn.execute(sessionless_query(now, limit)).mappings()]


def sessionless_query(now: datetime, limit: int) -> Select:
    latest = (
        select(event_log.c.order_id, event_log.c.type, event_log.c.data["reason"].astext.label("reason"),
               event_log.c.occurred_at)
        .where(SESSIONLESS_ORDER, event_log.c.occurred_at >= now - SESSIONLESS_SHOWN,
               ~select(sessions.c.order_id).where(sessions.c.order_id == event_log.c.order_id).exists())
        .order_by(event_log.c.order_id, event_log.c.occurred_at.desc())
        .distinct(event_log.c.order_id)
        .subquery())
    return select(latest).order_by(latest.c.occurred_at.desc()).limit(limit)


def order_of_provider_session(conn: Connection, provider_session_id: str) -> tuple[str, str] | None:
    """The order a provider session belongs to and its provider (the local provider page; local
    stacks only)."""
    row = conn.execute(select(sessions.c.order_id, sessions.c.provider)
                       .where(sessions.c.provider_session_id == provider_session_id)).first()
    return (row[0], row[1]) if row else None


def funnel(conn: Connection, start: date, end: date) -> dict[str, Any]:
    """The funnel for days [start, end]: counts per metric, conversion % (verified of received,
    returning customers apart),
    time-to-verify buckets and the median."""
    report = _funnel_totals(conn, start, end)
    # A returning customer's order (verified at once, DESIGN.md 3b) is counted apart
    # (`returning_customers`) and left out of both sides: it asked nobody to verify.
    received = report["counts"].get("orders_received", 0) - report["counts"].get("returning_customers", 0)
    verified = report["counts"].get("verified", 0)
    report["conversion_percent"] = round(100.0 * verified / received, 1) if received else None
    return report


def _funnel_totals(conn: Connection, start: date, end: date) -> dict[str, Any]:
    """Counts per metric, time-to-verify buckets and the median, for days in [start, end]."""
    counts = dict(conn.execute(
        text("SELECT metric, sum(count) FROM funnel_daily WHERE day BETWEEN :a AND :b GROUP BY metric"),
        {"a": start, "b": end},
    ).all())
    buckets = dict(conn.execute(
        text("SELECT bucket, count(*) FROM verify_durations WHERE day BETWEEN :a AND :b GROUP BY bucket"),
        {"a": start, "b": end},
    ).all())
    median = conn.execute(
        text("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FROM verify_durations "
             "WHERE day BETWEEN :a AND :b"),
        {"a": start, "b": end},
    ).scalar()
    return {"counts": {k: int(v) for k, v in counts.items()},
            "buckets": {k: int(v) for k, v in buckets.items()},
            "median_seconds_to_verify": float(median) if median is not None else None}


def funnel_days(conn: Connection, start: date, end: date) -> dict[date, dict[str, int]]:
    """Per day in [start, end] (days without a row included), each metric's count."""
    days = {start + timedelta(days=i): {} for i in range((end - start).days + 1)}
    rows = conn.execute(select(funnel_daily.c.day, funnel_daily.c.metric, funnel_daily.c.count)
                        .where(and_(funnel_daily.c.day >= start, funnel_daily.c.day <= end)))
    for day, metric, count in rows:
        days[day][metric] = int(count)
    return days


def parked_outbox_ids(conn: Connection) -> list[int]:
    return list(conn.execute(select(outbox.c.id).where(outbox.c.dead_at.isnot(None)).order_by(outbox.c.id))
                .scalars())
