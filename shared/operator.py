"""Operator actions from a shell with the service's environment (DATABASE_URL or Cloud SQL):

    python -m shared.operator verify ORDER-ID --by alice
    python -m shared.operator cancel ORDER-ID --by alice
    python -m shared.operator extend ORDER-ID 48h --by alice     (new deadline = now + 48h)
    python -m shared.operator funnel 2026-11-01 2026-11-30

Each is the same conditional transition as the webhooks and timers, recorded with the operator's
name; its side effects (timers, emails, refunds) are relayed before the command returns.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from shared import bootstrap
from shared.config import parse_duration
from shared.handlers import intake, subscribers, timers


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.operator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("verify", "cancel", "extend", "funnel"))
    parser.add_argument("subject", help="order id, or the first day for funnel")
    parser.add_argument("value", nargs="?", help="duration for extend, last day for funnel")
    parser.add_argument("--by", default=None, help="operator name, recorded with the event")
    args = parser.parse_args(argv)
    c = bootstrap.container()
    if args.action == "funnel":
        last = date.fromisoformat(args.value) if args.value else date.fromisoformat(args.subject)
        print(json.dumps(subscribers.funnel(c.db, date.fromisoformat(args.subject), last), indent=2))
        return 0
    if not args.by:
        parser.error("--by is required: actions are recorded with the operator's name")
    now = c.clock.now()
    if args.action == "extend":
        if not args.value:
            parser.error("extend needs a duration, e.g. 48h")
        result = timers.extend_deadline(c.db, c.settings, args.subject, now + parse_duration(args.value, "duration"),
                                        now=now, actor=f"operator:{args.by}")
    else:
        result = intake.operator_action(c.db, args.subject, args.action, operator=args.by, now=now)
    if result.status == "accepted":
        c.relay([args.subject])
    print(json.dumps(result.to_dict()))
    return 0 if result.status == "accepted" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
