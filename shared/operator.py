"""The operator's console in a terminal (the same reads and actions as the browser console):

    python -m shared.operator status ORDER                  the order, its timeline, timers, emails, deliveries
    python -m shared.operator list [--status S] [--due H] [--overdue] [--attention] [--q ORDER|EMAIL]
    python -m shared.operator verify ORDER --reason id_checked_in_store [--note TEXT]
    python -m shared.operator cancel ORDER --reason customer_request
    python -m shared.operator extend ORDER 48h               (new deadline = now + 48h)
    python -m shared.operator resend-link ORDER              (a fresh provider session, a new link email)
    python -m shared.operator refund-done ORDER [--reason CODE] [--note T]   / refund-failed ORDER
    python -m shared.operator revoke ORDER --reason document_doubt
    python -m shared.operator retry OUTBOX-ID | --all-parked
    python -m shared.operator retry-store-action ORDER [--store-action ACTION:CONNECTOR]   a store call that failed
    python -m shared.operator retry-effect ORDER [--effect NAME]     a registered side effect that failed
    python -m shared.operator funnel today | 7d | 2026-11-01..2026-11-30
    python -m shared.operator health                        the numbers the alerts watch (docs/RUNBOOK.md)

ORDER is a session key (`123`, `lightspeed:123`) or a store's own order id: a bare `123` finds
the generic order 123 and the Lightspeed sale 123; `status` shows every match, an action on an id
that several sources share needs `--source orders|lightspeed`.

A reason is a code from the action's fixed list (`--help` on the action lists them), never free
text: events are kept forever and published. `--note TEXT` (at most 200 characters) is kept in
the database only, shown by `status`, and erased with the customer.

`status` and `list` are recorded in the audit trail of reads (the console's Audit page; a searched
email as its keyed hash) before they print.

Tables by default, `--json` for scripts. Actions are recorded as `cli:<database user> (<--by>)`
(default: your user name; the console's are `operator:<email>`, verified by IAP) and relayed
before the command returns. With neither DATABASE_URL nor INSTANCE_CONNECTION_NAME set, it
uses the running local stack's `.local/stack.env`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import MutableMapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.config import Runtime
from shared.domain import keys, reasons

STACK_ENV = Path(Runtime.from_env().local_state_dir or Path(__file__).resolve().parents[1] / ".local") / "stack.env"
SOURCES = (keys.GENERIC, *keys.namespaced())
ORDER_ACTIONS = ("verify", "cancel", "extend", "resend-link", "refund-done", "refund-failed", "revoke",
                 "retry-store-action", "retry-effect")
# The console's retry buttons (one per failed row of the order page): the row's name and where
# `status` lists the rows; without it, the CLI names the order's one failed row.
RETRIES = {"retry-store-action": ("store_action", "store_actions", "store action"),
           "retry-effect": ("effect", "effect_runs", "side effect")}


class UsageError(Exception):
    """A bad command line: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise UsageError(message)


def read_stack_env(path: Path = STACK_ENV) -> dict[str, str]:
    """What the local stack's run command left in `.local/stack.env` (empty when there is none)."""
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def load_stack_env(path: Path = STACK_ENV, env: MutableMapping[str, str] | None = None) -> bool:
    """Fill in the local stack's settings when this shell names no database. True if it did.

    It writes them into this process's environment (unless given another mapping), where
    `Settings.from_env()` then reads them: the one place outside `shared/config.py` that
    touches the environment (tests/unit/test_environment_reads.py lists it)."""
    env = os.environ if env is None else env
    if env.get("DATABASE_URL") or env.get("INSTANCE_CONNECTION_NAME") or not path.exists():
        return False
    for key, value in read_stack_env(path).items():
        env.setdefault(key, value)
    return True


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m shared.operator", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--by", default=None, help="operator name recorded with actions (default: $USER)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    status = commands.add_parser("status", help="one order's story")
    status.add_argument("order")
    status.add_argument("--source", choices=SOURCES, help="the order's source, when its id is shared")
    listing = commands.add_parser("list", help="sessions, newest first (by deadline with --due/--overdue)")
    listing.add_argument("--status")
    listing.add_argument("--due", type=int, metavar="HOURS", help="open sessions due within HOURS")
    listing.add_argument("--overdue", action="store_true")
    listing.add_argument("--attention", action="store_true",
                         help="in review, refund open, parked, stuck; and orders that opened no session")
    listing.add_argument("--q", help="an order id or a customer email (any case)")
    listing.add_argument("--after", help="the cursor printed under the previous page")
    listing.add_argument("--limit", type=int, default=50)
    for name in ORDER_ACTIONS:
        action = commands.add_parser(name)
        action.add_argument("order")
        action.add_argument("--source", choices=SOURCES, help="the order's source, when its id is shared")
        if name == "extend":
            action.add_argument("duration", help="new deadline from now, e.g. 48h")
        if name == "retry-store-action":
            action.add_argument("--store-action", metavar="ACTION:CONNECTOR",
                                help="which failed store action, as `status` lists it (e.g. hold:shopify); "
                                     "default: the order's one failed store action")
        if name == "retry-effect":
            action.add_argument("--effect", metavar="NAME",
                                help="which failed side effect, as `status` lists it; "
                                     "default: the order's one failed side effect")
        if name == "verify":
            action.add_argument("--age-checked", action="store_true",
                                help="you checked the customer is of age: their next orders need no verification")
        if name in reasons.REASONS:
            allowed = reasons.codes(name)
            action.add_argument("--reason", choices=allowed, metavar="CODE",
                                required=name in reasons.REQUIRED,
                                help=f"why, one of: {', '.join(allowed)}"
                                     + ("" if name in reasons.REQUIRED else " (optional)"))
            action.add_argument("--note", type=_note, metavar="TEXT",
                                help=f"optional, at most {reasons.NOTE_MAX} characters: kept in the database only "
                                     "(never published or exported), erased with the customer; required with "
                                     "--reason other. No names, dates of birth or document numbers")
    forget = commands.add_parser("forget", help="erase a customer's email everywhere, on request")
    forget.add_argument("email")
    retry = commands.add_parser("retry", help="retry a parked outbox row")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("outbox_id", nargs="?", type=int)
    target.add_argument("--all-parked", action="store_true")
    purge = commands.add_parser("purge", help="what retention erases and deletes (the sweeper does it)")
    purge.add_argument("--dry-run", action="store_true", required=True,
                       help="count only (purging itself is the sweeper's, in bounded batches)")
    commands.add_parser("health", help="outbox backlog and parked rows, reviews by reason, failed refunds, "
                                       "the local queue's dead letters, the last sweep (docs/RUNBOOK.md)")
    funnel = commands.add_parser("funnel")
    funnel.add_argument("range", nargs="?", default="7d", help="today, 7d, or 2026-11-01..2026-11-30")
    funnel.add_argument("last", nargs="?", help=argparse.SUPPRESS)  # the older `funnel FIRST LAST`
    return parser


def _note(value: str) -> str:
    """`--note`: at most NOTE_MAX characters (argparse reports it as a usage error)."""
    if len(value.strip()) > reasons.NOTE_MAX:
        raise argparse.ArgumentTypeError(f"at most {reasons.NOTE_MAX} characters, this is {len(value.strip())}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return "" if value is None else value


def table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Aligned text columns."""
    cells = [[str(_plain(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _progress(done: int, total: int) -> None:
    filled = int(30 * done / total) if total else 30
    print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end="" if done < total else "\n",
          file=sys.stderr, flush=True)


def _matches(c, args) -> list[dict[str, str]]:
    """The sessions ORDER names (with --source: that source's order of that id): each one's key
    and source."""
    from shared.db import reads

    if not args.source:
        with c.db.read() as conn:
            return reads.matching_orders(conn, args.order)
    try:  # ORDER is that source's own id
        key = keys.session_key(args.source, args.order)
    except ValueError:
        raise UsageError(f"{args.order} is not a {args.source} order id") from None
    with c.db.read() as conn:
        return [m for m in reads.matching_orders(conn, key) if m["order_id"] == key]


def _read(args, detail: str = "") -> str:
    """The audit trail's detail of a CLI read: where it came from, and in which form."""
    return ", ".join(p for p in ("cli", "json" if args.json else "", detail) if p)


def _status(c, args, operator: str) -> int:
    from shared.db import audit_store, reads
    from shared.domain.audit import ReadAction, ReadEntry

    found = _matches(c, args)
    if not found:
        return _unopened(c, args, operator)
    with c.db.read() as conn:
        stories = [reads.order_story(conn, m["order_id"]) for m in found]
        for m in found:
            audit_store.record(conn, ReadEntry(operator, ReadAction.VIEW_ORDER, order_id=m["order_id"],
                                               detail=_read(args)))
    if args.json:
        print(json.dumps(stories[0] if len(stories) == 1 else {"matches": stories}, default=str, indent=2))
        return 0
    if len(stories) > 1:
        print(f"{args.order} matches {len(stories)} sessions: {_named(found)}")
    for story in stories:
        _print_story(story, separate=len(stories) > 1)
    return 0


def _unopened(c, args, operator: str) -> int:
    """An order that opened no session (stale, a sale without an email): what was recorded."""
    from shared.db import audit_store, reads
    from shared.domain.audit import TERM_MAX, ReadAction, ReadEntry

    order_id = keys.session_key(args.source, args.order) if args.source else args.order
    with c.db.read() as conn:
        events = reads.unopened_order_events(conn, order_id)
        if events:
            audit_store.record(conn, ReadEntry(operator, ReadAction.VIEW_ORDER, order_id=order_id[:TERM_MAX],
                                               detail=_read(args, "no session")))
    if not events:
        raise UsageError(f"no order {args.order}")
    if args.json:
        print(json.dumps({"session": None, "events": events}, default=str, indent=2))
        return 0
    print(f"order {args.order}: no verification session (the customer was sent nothing)")
    print(f"\ntimeline\n{table(events, ('occurred_at', 'order_id', 'type', 'actor', 'data'))}")
    return 0


def _named(found: list[dict[str, str]]) -> str:
    return ", ".join(f"{m['order_id']} ({m['source']})" for m in found)


def _print_story(story: dict[str, Any], *, separate: bool) -> None:
    s = story["session"]
    if separate:
        print()
    placed = _plain(s["store_ordered_at"]) + " UTC" if s.get("store_ordered_at") else "(not given)"
    print(f"order {s['order_id']}: {s['status']}, source {s['source']}, "
          f"deadline {_plain(s['deadline'])} UTC (v{s['deadline_version']}), refund {s['refund_status'] or 'none'}")
    print(f"placed at the store {placed}, received {_plain(s['ordered_at'])} UTC")
    if story.get("returning"):
        print(story["returning"]["text"])
    if story.get("record"):
        r = story["record"]
        print(f"verify once: this customer's record comes from order {r['session_id']}, "
              f"verified {_plain(r['verified_at'])} UTC, until {_plain(r['expires_at'])} UTC "
              "(revoke ORDER --reason CODE)")
    for title, rows, columns in (
        ("timeline", _noted(story), ("occurred_at", "type", "actor", "data", "note")),
        ("timers", story["timers"], ("kind", "reminder_index", "deadline_version", "fire_at", "state")),
        ("emails", story["emails"], ("kind", "reminder_index", "state", "attempts", "sent_at")),
        ("deliveries", story["outbox"], ("id", "kind", "topic", "message_type", "attempts", "delivered_at",
                                         "dead_at", "last_error")),
        ("store actions", story.get("store_actions", []), ("action", "connector", "state", "attempts",
                                                           "error_code", "finished_at")),
        ("side effects", story.get("effect_runs", []), ("effect", "state", "attempts", "error_code",
                                                        "created_at", "finished_at")),
    ):
        print(f"\n{title}\n{table(rows, columns) if rows else '(none)'}")


def _noted(story: dict[str, Any]) -> list[dict[str, Any]]:
    """The timeline with each operator's note beside its event (staff only: never in the event)."""
    notes = story.get("notes", {})
    return [{**e, "note": notes.get(str(e.get("event_id")), "")} for e in story["events"]]


def _list(c, args, operator: str) -> int:
    from shared.db import audit_store, reads
    from shared.domain import audit

    if args.due is not None and not 0 < args.due <= 24 * 365:  # as the console's "due within"
        raise UsageError("--due: a whole number of hours, at most a year")
    chosen = reads.SessionFilter(status=args.status, due_within=timedelta(hours=args.due) if args.due else None,
                                 overdue=args.overdue, attention=args.attention, query=args.q, after=args.after,
                                 limit=max(1, min(args.limit, 500)))
    read = audit.of_term(operator, audit.ReadAction.SEARCH if args.q else audit.ReadAction.LIST_SESSIONS, args.q,
                         audit.pepper_of(c.settings.reuse.key_secret), _read(args, chosen.described()))
    try:
        with c.db.read() as conn:
            rows, cursor = reads.list_sessions(conn, chosen, c.clock.now())
            # As the console: orders that opened no session, beside the first page of --attention.
            unopened = (reads.sessionless_orders(conn, c.clock.now())
                        if args.attention and not args.after and not args.q else [])
            audit_store.record(conn, read)
    except ValueError:
        raise UsageError("--after is not a cursor this command printed") from None
    if args.json:
        print(json.dumps({"sessions": rows, "next": cursor, **({"no_session": unopened} if unopened else {})},
                         default=str))
        return 0
    if rows:
        print(table(rows, ("order_id", "status", "deadline", "refund_status", "created_at", "customer_email")))
    else:
        print("no session matches")
    if cursor:
        print(f"more: --after {cursor}")
    if unopened:
        print(f"\norders that opened no session (received in the last {reads.SESSIONLESS_SHOWN.days} days)\n"
              + table(unopened, ("order_id", "type", "reason", "occurred_at")))
    return 0


def _act(c, args, operator: str) -> int:
    from shared.console import actions

    found = _matches(c, args)
    if len(found) > 1:
        raise UsageError(f"{args.order} matches {len(found)} sessions: {_named(found)}; say which with --source")
    # No match: the action itself answers (unknown order), as for any key.
    order_id = found[0]["order_id"] if found else args.order
    chosen = {}
    if args.command in RETRIES:  # the row to retry, as the console's button names it
        field, _, noun = RETRIES[args.command]
        chosen[field] = getattr(args, field) or (_one_failed(c, args, order_id) if found else None)
        if not chosen[field]:  # nothing failed, or no such order: the console shows no retry button
            return _answer(args, order_id, {"status": "ignored", "orderId": order_id,
                                            "detail": f"no failed {noun}: nothing to retry" if found
                                            else "unknown order"})
    result = actions.run(args.command, actions.Request(order_id=order_id, operator=operator,
                                                       reason=getattr(args, "reason", None),
                                                       note=getattr(args, "note", None),
                                                       duration=getattr(args, "duration", None),
                                                       age_checked=getattr(args, "age_checked", False),
                                                       **chosen))
    return _answer(args, order_id, result.to_dict())


def _answer(args, order_id: str, body: dict[str, str]) -> int:
    """An action's answer (a `Result.to_dict()`), one line or its JSON; 0 when it was accepted, else 1."""
    detail = body.get("detail")
    print(json.dumps(body) if args.json else
          f"{args.command} {order_id}: {body['status']}{f' ({detail})' if detail else ''}")
    return 0 if body["status"] == "accepted" else 1


def _one_failed(c, args, order_id: str) -> str | None:
    """A retry named no row: the order's one failed store action (`action:connector`) or side
    effect, as `status` lists them; None when none failed, a usage error when several did."""
    from shared.db import reads

    field, rows, noun = RETRIES[args.command]
    with c.db.read() as conn:
        story = reads.order_story(conn, order_id) or {}
    failed = [f"{r['action']}:{r['connector']}" if field == "store_action" else r["effect"]
              for r in story.get(rows, []) if r["state"] == "failed"]
    if len(failed) > 1:
        raise UsageError(f"{order_id} has {len(failed)} failed {noun}s: {', '.join(failed)}; "
                         f"say which with --{field.replace('_', '-')}")
    return failed[0] if failed else None


def _forget(c, args, operator: str) -> int:
    """Forget a customer by email: counts only, never the email, in what it prints."""
    from shared.console import actions

    erasure = actions.forget(args.email, operator)
    counts = {"sessions": erasure.sessions, "cancelled": len(erasure.cancelled), "records": erasure.records}
    print(json.dumps(counts) if args.json else
          f"forget: {counts['sessions']} session(s) erased, {counts['cancelled']} open session(s) cancelled, "
          f"{counts['records']} verified-customer record(s) removed")
    return 0


def _retry(c, args, operator: str) -> int:
    from shared.console import actions
    from shared.db import reads

    if args.all_parked:
        with c.db.read() as conn:
            ids = reads.parked_outbox_ids(conn)
    else:
        ids = [args.outbox_id]
    retried = 0
    for done, outbox_id in enumerate(ids, 1):
        retried += bool(actions.retry(outbox_id, operator))
        if args.all_parked:
            _progress(done, len(ids))
    print(json.dumps({"retried": retried, "of": len(ids)}) if args.json else f"retried {retried} of {len(ids)}")
    return 0 if retried == len(ids) else 1


def _funnel(c, args) -> int:
    from shared.console import report

    text = f"{args.range}..{args.last}" if args.last else args.range
    try:
        start, end = report.parse_range(text, c.clock.now().date())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    data = report.funnel_report(c.db, start, end)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    metrics = sorted({m for counts in data["days"].values() for m in counts})
    rows = [{"day": day, **counts} for day, counts in data["days"].items()]
    print(table(rows, ("day", *metrics)) if metrics else f"nothing counted {start}..{end}")
    median = data["median_seconds_to_verify"]
    conversion = data["conversion_percent"]
    print(f"\nconversion {'—' if conversion is None else f'{conversion} %'}, median time to verify "
          f"{'—' if median is None else f'{median / 3600:.1f} h'}")
    return 0


def _health(c, args) -> int:
    from shared.db import health

    with c.db.read() as conn:
        numbers = health.report(conn, local_queue=health.uses_local_queue(c.settings))
    if args.json:
        print(json.dumps(numbers.to_dict()))
        return 0
    outbox = numbers.outbox
    print(f"outbox: {outbox.undelivered} undelivered, the oldest {outbox.oldest_seconds:.0f} s old; "
          f"{outbox.parked} parked")
    reviews = ", ".join(f"{reason} {count}" for reason, count in numbers.in_review.items()) or "none"
    print(f"in review: {reviews}")
    print(f"refunds failed: {numbers.refunds_failed}")
    refused = ", ".join(f"{store} {count}" for store, count in numbers.store_actions_failed.items()) or "none"
    print(f"store actions failed: {refused}")
    failed = ", ".join(f"{name} {count}" for name, count in (numbers.effects_failed or {}).items()) or "none"
    print(f"side effects failed: {failed}")
    if numbers.local_dead_letters is not None:
        dead = ", ".join(f"{queue} {count}" for queue, count in numbers.local_dead_letters.items()) or "none"
        print(f"local deliveries given up: {dead}")
    last = numbers.last_sweep
    if last is None:
        print("last sweep: none recorded")
    else:
        did = ", ".join(f"{name} {value}" for name, value in last.report.items())
        print(f"last sweep: {last.finished_at.isoformat(timespec='seconds')}, {last.seconds_ago:.0f} s ago, "
              f"took {last.seconds:.1f} s; {did}")
    return 0


def _purge_preview(c, args) -> int:
    from shared.handlers import retention

    counts = retention.preview(c.db, c.settings, now=c.clock.now())
    if args.json:
        print(json.dumps(counts))
        return 0
    width = max(len(name) for name in counts)
    for name, count in counts.items():
        print(f"{name:<{width}}  {count:>10,}")
    print("\n(dry run: nothing changed; the sweeper purges in batches of "
          f"{retention.BATCH:,} each minute)")
    return 0


# The subcommands that are not an order action (those go to `_act`).
_COMMANDS = {
    "status": _status,
    "list": _list,
    "retry": _retry,
    "forget": _forget,
    "funnel": lambda c, args, operator: _funnel(c, args),
    "health": lambda c, args, operator: _health(c, args),
    "purge": lambda c, args, operator: _purge_preview(c, args),
}


def _cli_actor(c, name: str) -> str:
    """`cli:<database session user> (<name>)`: recorded apart from the console's IAP-verified
    `operator:<email>`, since `--by` (or $USER) is only what the person typing said."""
    from shared.db import operator_store
    from shared.handlers.transitions import CLI_ACTOR

    with c.db.read() as conn:
        user = operator_store.session_user(conn)
    return f"{CLI_ACTOR}{user} ({name})"


def main(argv: list[str]) -> int:
    from shared.errors import ServiceError

    try:
        args = _parser().parse_args(argv)
        load_stack_env()
        from shared import bootstrap

        c = bootstrap.container()
        operator = _cli_actor(c, args.by or Runtime.from_env().operator or getpass.getuser())
        return _COMMANDS.get(args.command, _act)(c, args, operator)
    except UsageError as exc:
        print(f"python -m shared.operator: {exc} (see --help)", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"python -m shared.operator: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
