"""Store scenarios of the chaos suite (issue 21): Shopify orders through the real local stack.

Each run starts its own Shopify stand-in as a process (`python -m devstack.stores.shopify`,
orders created when first named, a configurable cost bucket), outside the stack, so a SIGKILL
of every stack process leaves the store's record intact; the stack is pointed at it with
`SHOPIFY_ADMIN_URL`. What the store received is read from the stand-in (`GET
/_standin/counts`: every mutation by name, order and receive time), and counted per order:

- `shopify_sigkill`: every stack process SIGKILLed in the middle of N orders (and once more in
  the middle of the approvals), half approved by Veriff, half left to expire: every order held
  once per fulfillment order (no second hold of ours), every approved order released once and
  never cancelled, every expired order cancelled once and never released; link emails once. An
  order is approved once its customer received the link email (as a customer can only be). An
  email may arrive twice only as the design allows: the SMTP server took it, the SIGKILL came
  before its send was recorded, and the attempt that took its claim over sent it again with the
  same Message-ID (checked from the arrivals, the kills, the claim and its events; counted apart).
- `shopify_throttle`: a 100-point/s bucket (10 points per mutation) and a burst of N orders:
  every order held once, none lost or doubled, and the time from the first webhook to the last
  hold against the bucket's theoretical minimum (every point the store charged, reads included,
  less the full bucket at the start, over the restore rate).
- `sigterm` (issue 24): SIGTERM to every function's process a third into N orders, half Shopify and
  half generic: each process gone within 8 s, the stack started again on the same ports, and every
  order with its session and timers, one link email and (Shopify) one hold; nothing refunded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

import requests

from devstack.postgres import free_port
from devstack.signing import SHOPIFY_SHOP_DOMAIN, shopify_headers, shopify_order
from tests.chaos.harness import ChaosRun, ChaosWorld, Clients, Request, customer_email
from tests.chaos.scenarios import Report, _once_each, _refund_figures, _repeats
from tests.stack import FUNCTION_COUNT, ROOT, process_alive, wait_for

HOLD = "fulfillmentOrderHold"
RELEASE = "fulfillmentOrderReleaseHold"
CANCEL = "orderCancel"
TAGS = "tagsAdd"


class ShopifyProcess:
    """`python -m devstack.stores.shopify` on a free port, as its own process; a context manager."""

    def __init__(self, *, max_available: float = 1000.0, restore_rate: float = 100.0,
                 mutation_cost: float = 10.0) -> None:
        self.token = "shpat_" + secrets.token_hex(16)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/admin/api/2025-10/graphql.json"
        self._args = [sys.executable, "-m", "devstack.stores.shopify", "--port", str(self.port), "--quiet",
                      "--token", self.token, "--max-available", f"{max_available:g}",
                      "--restore-rate", f"{restore_rate:g}", "--mutation-cost", f"{mutation_cost:g}"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ShopifyProcess:
        self.process = subprocess.Popen(self._args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(self._up, "the Shopify stand-in to listen", timeout=30, every=0.1)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def _up(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the Shopify stand-in exited with {self.process.returncode}")
        try:
            return requests.get(self.base + "/_standin/counts", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def counts(self) -> dict[str, Any]:
        return requests.get(self.base + "/_standin/counts", timeout=30).json()

    def settings(self, client_secret: str) -> dict[str, str]:
        """The stack's environment for this shop (the webhooks' secret is the run's own)."""
        return {"SHOPIFY_SHOP_DOMAIN": SHOPIFY_SHOP_DOMAIN, "SHOPIFY_CLIENT_SECRET": client_secret,
                "SHOPIFY_ADMIN_URL": self.url, "SHOPIFY_ADMIN_TOKEN": self.token}


def shopify_run(world: ChaosWorld, scenario: str, shop: ShopifyProcess, **settings: str) -> ChaosRun:
    """A chaos run whose stack acts on `shop` (the outcome webhook left out: the store is counted)."""
    secret = "shpss_" + secrets.token_hex(16)
    run = world.run(scenario, **shop.settings(secret), LOCAL_OUTCOME_WEBHOOK="off", **settings)
    run.secrets["SHOPIFY_CLIENT_SECRET"] = secret
    return run


def order_ids(count: int) -> list[int]:
    """Shopify's numeric order ids, from a random base (one run's ids never meet another's)."""
    base = random.SystemRandom().randrange(10**11, 9 * 10**11)
    return [base + i for i in range(count)]


def key(order_id: int) -> str:
    return f"shopify:{order_id}"


def gid(order_id: int) -> str:
    return f"gid://shopify/Order/{order_id}"


def order_request(run: ChaosRun, order_id: int) -> Request:
    """An `orders/paid` webhook, signed as Shopify signs it; the same webhook id on every re-send."""
    body = json.dumps(shopify_order(order_id, customer_email(key(order_id)))).encode()
    headers = shopify_headers(run.secrets["SHOPIFY_CLIENT_SECRET"], body, webhook_id=str(uuid.uuid4()))
    return Request(run.url + "/webhooks/shopify", body, headers, key(order_id))


def sessions(run: ChaosRun) -> dict[str, list]:
    """session key -> [status, Veriff session id] of every Shopify order (the run's database is its own)."""
    return {k: [s, v] for k, s, v in run.query(
        "SELECT order_id, status, provider_session_id FROM verification_sessions WHERE order_id LIKE 'shopify:%'")}


def open_store_actions(run: ChaosRun) -> int:
    return run.scalar("SELECT count(*) FROM store_actions WHERE state IN ('due', 'leased')")


def store_action_states(run: ChaosRun) -> dict[str, int]:
    return {f"{a} {s}": n for a, s, n in run.query(
        "SELECT action, state, count(*) FROM store_actions GROUP BY action, state ORDER BY 1, 2")}


def by_order(mutations: list[dict], name: str) -> Counter:
    return Counter(m["order"] for m in mutations if m["name"] == name)


def emails_by_order(run: ChaosRun, keys: list[str]) -> Counter:
    """(session key, kind) -> emails its customer received."""
    owner = {customer_email(k): k for k in keys}
    received = run.world.inbox.by_recipient_and_kind()
    return Counter({(owner[rcpt], kind): n for (rcpt, kind), n in received.items() if rcpt in owner})


def link_received(run: ChaosRun, keys: list[str]) -> set[str]:
    """The orders whose customer received a link email."""
    return {k for (k, kind), n in emails_by_order(run, keys).items() if kind == "link" and n}


def _held_once(report: Report, mutations: list[dict], ids: list[int]) -> None:
    _once_each(report, by_order(mutations, HOLD), [gid(i) for i in ids], "hold")


# ---- SIGKILL of every stack process, Shopify orders half approved, half expiring ----------------


def shopify_sigkill(world: ChaosWorld, *, orders: int = 300, window: int = 120, second_kill: bool = True) -> Report:
    """N Shopify orders, 16 at once, every stack process SIGKILLed a third into them (and, with
    `second_kill`, half-way through the approvals), the same start command each time; half the
    orders approved by Veriff once their customer received the link email, the rest left to
    expire after `window` s."""
    report = Report("shopify_sigkill")
    # A generous bucket (Shopify Plus's restore rate): the bucket is shopify_throttle's subject.
    with ShopifyProcess(max_available=2000, restore_rate=1000) as shop, \
            shopify_run(world, "shopkill", shop, VERIFICATION_WINDOW=f"{window}s",
                        REMINDER_OFFSETS=f"{window // 2}s") as run:
        ids = order_ids(orders)
        keys = [key(i) for i in ids]
        approved = set(keys[::2])
        kills: list[int] = []
        restarts: list[float] = []

        def fault() -> None:
            began = time.monotonic()
            kills.append(run.kill_everything())  # its time, every process gone, in run.killed_at
            run.restart()
            restarts.append(round(time.monotonic() - began, 1))

        tally = Clients().run([order_request(run, i) for i in ids], retry_until=time.monotonic() + 180,
                              fault=(orders // 3, fault))
        report.figures["order webhooks"] = dict(tally.count(final=False))
        report.check(len(tally.accepted_keys) == orders,
                     f"only {len(tally.accepted_keys)} of {orders} orders were ever answered 2xx")
        # A customer approves through the link in the email, never before it arrived: an order
        # whose attempt the SIGKILL caught after its link was saved and before the SMTP server
        # took the email gets its link email once its claim's lease passes (the sweeper's
        # re-drive); approved before that, its session would be verified and the link email,
        # "verify your age", rightly never sent.
        report.settle(run, lambda: len(link_received(run, keys)) >= orders,
                      "a Veriff session (link) and its link email for every order", timeout=window)
        links = {k: v for k, (s, v) in sessions(run).items() if v}
        received = link_received(run, keys)
        approvals = [run.approval_request(k, links[k]) for k in sorted(approved) if k in links and k in received]
        decided = Clients().run(approvals, retry_until=time.monotonic() + window,
                                fault=(len(approvals) // 2, fault) if second_kill else None)
        report.figures["approval attempts"] = dict(decided.count(final=False))
        report.check(decided.share_2xx() == 1.0, f"approvals finally answered {dict(decided.count())}")
        report.figures["processes killed"] = kills
        report.figures["seconds from kill to up again"] = restarts
        report.check(len(kills) == 1 + second_kill, f"{len(kills)} kills fired")
        report.settle(run, lambda: not any(s in ("pending", "in_review") for s, _ in sessions(run).values())
                      and open_store_actions(run) == 0 and run.undelivered() == 0 and run.messages_in_flight() == 0,
                      "every session closed, every store action finished, outbox and messages drained",
                      timeout=window + 150)
        _sigkill_figures(report, run, shop, ids, approved)
        report.figures["seconds"] = run.seconds()
    return report


def _sigkill_figures(report: Report, run: ChaosRun, shop: ShopifyProcess, ids: list[int],
                     approved: set[str]) -> None:
    states = sessions(run)
    report.figures["sessions"] = dict(Counter(s for s, _ in states.values()))
    report.figures["store actions"] = store_action_states(run)
    wrong = [k for k in map(key, ids) if states.get(k, [None])[0] != ("verified" if k in approved else "expired")]
    report.check(not wrong, f"{len(wrong)} sessions not verified (approved) or expired (the rest), e.g. "
                            f"{[(k, states.get(k, [None])[0]) for k in wrong[:3]]}")
    counts = shop.counts()
    mutations = counts["mutations"]
    report.figures["mutations"] = dict(Counter(m["name"] for m in mutations))
    report.figures["THROTTLED answers"] = counts["throttled"]
    report.check(counts["invalid"] == 0 and counts["unauthorized"] == 0,
                 f"{counts['invalid']} invalid and {counts['unauthorized']} unauthorized requests at the store")
    _held_once(report, mutations, ids)
    releases, cancels = by_order(mutations, RELEASE), by_order(mutations, CANCEL)
    verified = [gid(i) for i in ids if key(i) in approved]
    expired = [gid(i) for i in ids if key(i) not in approved]
    _once_each(report, releases, verified, "release of an approved order")
    _once_each(report, cancels, expired, "cancel of an expired order")
    both = [g for g in map(gid, ids) if releases[g] and cancels[g]]
    crossed = [g for g in verified if cancels[g]] + [g for g in expired if releases[g]]
    report.figures["orders released and cancelled"] = len(both)
    report.figures["orders given the other outcome"] = len(crossed)
    report.check(not both and not crossed, f"{len(both)} orders released and cancelled, {len(crossed)} given the "
                                           f"wrong outcome (e.g. {(both + crossed)[:3]})")
    unknown = set(m["order"] for m in mutations) - set(map(gid, ids))
    report.check(not unknown, f"mutations on {len(unknown)} orders never placed")
    tags = Counter((m["order"]) for m in mutations if m["name"] == TAGS)
    report.figures["tagsAdd per order (idempotent, a re-drive may repeat it)"] = dict(Counter(tags.values()))
    emails = emails_by_order(run, [key(i) for i in ids])
    report.figures["emails by kind"] = dict(Counter(kind for (_, kind), n in emails.items() for _ in range(n)))
    twice = sorted(k for k, n in emails.items() if n > 1)
    once = _repeats(report, run, emails)  # a repeat after a kill mid-send counted once, apart
    report.figures["link email claims taken over after a kill (sent by a later attempt)"] = run.scalar(
        "SELECT count(*) FROM email_sends WHERE kind = 'link' AND attempts > 1")
    links = Counter({k: n for (k, kind), n in once.items() if kind == "link"})
    _once_each(report, links, [key(i) for i in ids], "link email (a repeat after a kill mid-send counted once)")
    odd = sorted({k for k in map(key, ids) if not links.get(k)} | {k for k, _ in twice})
    if odd:
        report.figures["post-mortem of the orders with a link email lost or an email twice"] = {
            k: _post_mortem_or_why_not(run, k) for k in odd[:5]}
    report.figures["undelivered outbox rows"] = run.undelivered()
    report.check(report.figures["undelivered outbox rows"] == 0, "outbox rows left undelivered")
    report.check(run.stack_alive(), "the stack exited on its own")


def _post_mortem_or_why_not(run: ChaosRun, order: str) -> Any:
    try:
        return _email_post_mortem(run, order)
    except Exception as exc:  # noqa: BLE001 - a post-mortem never hides the figures
        return f"post-mortem failed: {type(exc).__name__}: {exc}"


def _email_post_mortem(run: ChaosRun, order: str) -> dict[str, Any]:
    """What the database and the inbox hold about one order's emails, in seconds from its session's
    creation: its events (types, kinds and reasons only), its email claims, its email messages in the
    local queue, the SMTP server's arrivals, and the kills. No address, no payload."""
    created = run.scalar("SELECT extract(epoch FROM created_at)::float8 FROM verification_sessions "
                         "WHERE order_id = :o", o=order)

    def rel(at: float | None) -> float | None:
        return None if at is None or created is None else round(at - created, 2)

    status, linked = run.query("SELECT status, provider_session_id IS NOT NULL FROM verification_sessions "
                               "WHERE order_id = :o", o=order)[0]
    events = [[t, rel(at), actor, {k: v for k, v in (data or {}).items() if k in ("kind", "reason", "reminder_index")}]
              for t, at, actor, data in run.query(
                  "SELECT type, extract(epoch FROM occurred_at)::float8, actor, data FROM event_log "
                  "WHERE order_id = :o ORDER BY id", o=order)]
    claims = [[kind, index, state, attempts, rel(claimed), rel(sent)] for kind, index, state, attempts, claimed, sent in
              run.query("SELECT kind, reminder_index, state, attempts, extract(epoch FROM claimed_at)::float8, "
                        "extract(epoch FROM sent_at)::float8 FROM email_sends WHERE order_id = :o ORDER BY 1, 2",
                        o=order)]
    messages = [[kind, attempts, last, rel(made), rel(first), rel(done)]
                for kind, attempts, last, made, first, done in run.query(
                    "SELECT job->>'kind', attempts, last_status, made, first, done FROM ("
                    "  SELECT convert_from(decode(convert_from(body, 'UTF8')::jsonb #>> '{message,data}', 'base64'),"
                    "         'UTF8')::jsonb AS job, attempts, last_status,"
                    "         extract(epoch FROM created_at)::float8 AS made,"
                    "         extract(epoch FROM first_attempt_at)::float8 AS first,"
                    "         extract(epoch FROM done_at)::float8 AS done"
                    "  FROM local_tasks WHERE queue = 'customer-emails') m "
                    "WHERE job->>'order_id' = :o ORDER BY made", o=order)]
    received = [[kind, rel(at)] for rcpts, kind, at in run.world.inbox.arrivals() if customer_email(order) in rcpts]
    message_ids = {kind: n for (rcpt, kind), n in run.world.inbox.by_recipient_and_kind(distinct=True).items()
                   if rcpt == customer_email(order).lower()}
    return {"status": status, "has link": linked, "events": events, "email_sends": claims,
            "email messages [kind, attempts, last status, queued, first tried, done]": messages,
            "smtp arrivals [kind, at]": received, "Message-IDs by kind": message_ids,
            "kills": [rel(at) for at in run.killed_at]}


# ---- a throttling store and a burst of orders ---------------------------------------------------


def shopify_throttle(world: ChaosWorld, *, orders: int = 1000, max_available: float = 1000.0,
                     restore_rate: float = 100.0, mutation_cost: float = 10.0,
                     max_ratio: float | None = 1.3) -> Report:
    """A burst of N Shopify orders, 16 at once, against a store whose cost bucket holds
    `max_available` points and restores `restore_rate` a second, `mutation_cost` per mutation.
    Every order must be held once (none lost, none doubled), and the last hold must come within
    `max_ratio` times the bucket's theoretical minimum from the first webhook (None: the ratio is
    reported, not checked: the test suite's small run, where a shared machine's load decides it)."""
    report = Report("shopify_throttle")
    with ShopifyProcess(max_available=max_available, restore_rate=restore_rate,
                        mutation_cost=mutation_cost) as shop, \
            shopify_run(world, "shopthrottle", shop, VERIFICATION_WINDOW="2h", REMINDER_OFFSETS="1h") as run:
        ids = order_ids(orders)
        began = time.time()
        tally = Clients().run([order_request(run, i) for i in ids], retry_until=time.monotonic() + 300)
        report.figures["order webhooks"] = dict(tally.count(final=False))
        report.figures["seconds to send the burst"] = round(time.time() - began, 1)
        report.check(len(tally.accepted_keys) == orders,
                     f"only {len(tally.accepted_keys)} of {orders} orders were ever answered 2xx")
        # Bounded: three times the minimum the bucket allows, and two minutes more.
        bound = 120 + 3 * orders * (3 * mutation_cost) / restore_rate
        report.settle(run, lambda: run.scalar("SELECT count(*) FROM store_actions WHERE action = 'hold' "
                                              "AND state IN ('done', 'failed', 'skipped')") >= orders
                      and open_store_actions(run) == 0,
                      "every order's hold finished", timeout=bound)
        counts = shop.counts()
        mutations = counts["mutations"]
        report.figures["store actions"] = store_action_states(run)
        report.figures["mutations"] = dict(Counter(m["name"] for m in mutations))
        report.figures["THROTTLED answers"] = counts["throttled"]
        report.check(counts["invalid"] == 0 and counts["unauthorized"] == 0,
                     f"{counts['invalid']} invalid and {counts['unauthorized']} unauthorized requests at the store")
        _held_once(report, mutations, ids)
        tagged = by_order(mutations, TAGS)
        lost_tags = [g for g in map(gid, ids) if not tagged[g]]
        report.figures["orders without their tag"] = len(lost_tags)
        report.check(not lost_tags, f"{len(lost_tags)} held orders never tagged")
        report.figures["tagsAdd per order"] = dict(Counter(tagged.values()))
        held = run.scalar("SELECT count(*) FROM event_log WHERE type = 'store.held'")
        report.figures["store.held events"] = held
        report.check(held == orders, f"{held} store.held events for {orders} orders")
        if mutations:
            finished = max(m["at"] for m in mutations if m["name"] in (HOLD, TAGS))
            took = finished - began
            mutation_points = len(mutations) * mutation_cost
            minimum = max(counts["charged"] - max_available, 0.0) / restore_rate
            report.figures["points charged (mutations, reads)"] = [mutation_points,
                                                                   round(counts["charged"] - mutation_points, 1)]
            report.figures["theoretical minimum s (every point charged)"] = round(minimum, 1)
            report.figures["theoretical minimum s (mutations only)"] = round(
                max(mutation_points - max_available, 0.0) / restore_rate, 1)
            report.figures["seconds from first webhook to last hold"] = round(took, 1)
            ratio = took / minimum if minimum else float("inf")
            report.figures["ratio to the minimum"] = round(ratio, 3)
            if max_ratio is not None:
                report.check(ratio <= max_ratio, f"finished in {took:.1f} s, {ratio:.2f}x the bucket's minimum "
                                                 f"{minimum:.1f} s (at most {max_ratio}x)")
        report.figures["seconds"] = run.seconds()
    return report


# ---- SIGTERM to every function mid-burst, Shopify and generic orders (issue 24) ----------------

EXIT_LIMIT = 8.0  # seconds: Cloud Run kills a container 10 s after its SIGTERM


def function_pids(run: ChaosRun) -> dict[str, int]:
    """Each function's functions-framework process (gunicorn's arbiter), from devstack.run's pid file."""
    lines = (run.stack.state_dir / "run" / "functions.pids").read_text().splitlines()
    return {name: int(pid) for pid, _, name in (line.partition(" ") for line in lines)}


def terminate_functions(run: ChaosRun) -> dict[str, float | None]:
    """SIGTERM to every function's process at once (as Cloud Run sends it to each instance): name ->
    seconds until it exited (None: still running after twice the limit). devstack.run sees the first
    exit and stops the rest its own way (SIGTERM to each group, SIGKILL after 10 s), as Ctrl-C does."""
    pids = function_pids(run)
    sent = {}
    for name, pid in pids.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        sent[name] = time.monotonic()
    exited: dict[str, float | None] = dict.fromkeys(pids)
    deadline = time.monotonic() + 2 * EXIT_LIMIT
    while any(v is None for v in exited.values()) and time.monotonic() < deadline:
        for name, pid in pids.items():
            if exited[name] is None and not process_alive(pid):
                exited[name] = round(time.monotonic() - sent[name], 2)
        time.sleep(0.02)
    return exited


def sigterm_mid_burst(world: ChaosWorld, *, orders: int = 300, window: int | None = None) -> Report:
    """N orders, half Shopify (`orders/paid`, held at the stand-in) and half generic, 16 at once; a
    third in, SIGTERM to every function of the stack; each must exit within 8 s. The same start
    command and ports again, clients re-sending what got no answer or a 5xx; then every order has
    its session and timers, one link email, and each Shopify order one hold: none lost, none twice.
    With `window` (seconds) the orders then expire, the timers made before the SIGTERM firing after
    it: one reminder and one expiry email each, one refund call per generic order, one cancel per
    Shopify order (the store refunds those)."""
    report = Report("sigterm")
    lifetime = {"VERIFICATION_WINDOW": f"{window}s", "REMINDER_OFFSETS": f"{window // 2}s"} if window else {}
    with ShopifyProcess(max_available=2000, restore_rate=1000) as shop, \
            shopify_run(world, "term", shop, **lifetime) as run:
        shop_ids = order_ids(orders // 2)
        generic = [f"{run.prefix}-{i}" for i in range(orders - len(shop_ids))]
        keys = [key(i) for i in shop_ids] + generic
        sent: list[float] = []  # when each attempt was signed (sent), to show the SIGTERM came mid-burst
        burst = [_timed(r, sent) for r in [order_request(run, i) for i in shop_ids]
                 + [run.order_request(o) for o in generic]]
        random.Random(orders).shuffle(burst)
        exits: dict[str, float | None] = {}
        terminated: list[float] = []

        def fault() -> None:
            began = time.monotonic()
            terminated.append(began)
            exits.update(terminate_functions(run))
            stack = run.stack.process
            try:
                stack.wait(30)  # devstack.run stops what is left and exits (a function exited)
                report.figures["devstack.run exit status"] = stack.returncode
            except subprocess.TimeoutExpired:
                report.problems.append("devstack.run still running 30 s after SIGTERM to its functions")
                run.stack.kill()
            report.figures["seconds from SIGTERM to the old stack gone"] = round(time.monotonic() - began, 1)
            run.restart()
            report.figures["seconds from SIGTERM to up again"] = round(time.monotonic() - began, 1)

        tally = Clients().run(burst, retry_until=time.monotonic() + 180, fault=(orders // 3, fault))
        report.figures["order webhooks"] = dict(tally.count(final=False))
        report.figures["5xx other than 503"] = tally.five_hundreds()
        report.check(tally.five_hundreds() == 0, f"{tally.five_hundreds()} answers were 5xx other than 503")
        report.figures["seconds from SIGTERM to exit"] = exits
        after = sum(1 for at in sent if terminated and at > terminated[0])
        report.figures["attempts sent after SIGTERM (of all)"] = [after, len(sent)]
        report.check(after > 0, "no order was sent after SIGTERM: the burst was over before it came")
        report.check(len(exits) == FUNCTION_COUNT, f"SIGTERM reached {len(exits)} of {FUNCTION_COUNT} functions")
        slow = {name: s for name, s in exits.items() if s is None or s >= EXIT_LIMIT}
        report.check(not slow, f"functions not gone within {EXIT_LIMIT:g} s of SIGTERM: {slow}")
        report.check(len(tally.accepted_keys) == orders,
                     f"only {len(tally.accepted_keys)} of {orders} orders were ever answered 2xx")
        report.settle(run, lambda: run.scalar("SELECT count(*) FROM verification_sessions "
                                              "WHERE provider_session_id IS NOT NULL") >= orders
                      and open_store_actions(run) == 0 and run.undelivered() == 0 and run.messages_in_flight() == 0
                      and sum(1 for (_, kind) in emails_by_order(run, keys).elements() if kind == "link") >= orders,
                      "a link for every order, every hold finished, outbox and messages drained", timeout=120)
        if window:
            report.settle(run, lambda: run.scalar("SELECT count(*) FROM verification_sessions "
                                                  "WHERE status = 'expired'") >= orders
                          and open_store_actions(run) == 0 and run.undelivered() == 0
                          and run.messages_in_flight() == 0 and len(run.refund_calls()) >= len(generic),
                          "every order expired, refunded or cancelled, outbox and messages drained",
                          timeout=window + 120)
        _sigterm_figures(report, run, shop, shop_ids, generic, expired=bool(window))
        report.figures["seconds"] = run.seconds()
    return report


def _timed(request: Request, sent: list[float]) -> Request:
    """`request`, noting the time of each attempt in `sent` (its headers signed afresh if it signs)."""
    def sign(body: bytes) -> dict[str, str]:
        sent.append(time.monotonic())
        return request.sign(body) if request.sign else request.headers
    return dataclasses.replace(request, sign=sign)


def _sigterm_figures(report: Report, run: ChaosRun, shop: ShopifyProcess, shop_ids: list[int],
                     generic: list[str], *, expired: bool) -> None:
    keys = [key(i) for i in shop_ids] + generic
    states = dict(run.query("SELECT order_id, status FROM verification_sessions"))  # the run's own database
    report.figures["sessions"] = dict(Counter(states.values()))
    end = "expired" if expired else "pending"
    wrong = [k for k in keys if states.get(k) != end]
    report.check(not wrong, f"{len(wrong)} sessions not {end} (e.g. {[(k, states.get(k)) for k in wrong[:3]]})")
    report.check(sorted(states) == sorted(keys), f"{len(states)} sessions for {len(keys)} orders "
                                                 f"({len(set(keys) - set(states))} missing)")
    timers = Counter(dict(run.query("SELECT t.order_id, count(*) FROM countdown_timers t JOIN local_tasks q "
                                    "ON q.name LIKE '%' || t.task_name GROUP BY t.order_id")))
    no_timers = [k for k in keys if timers.get(k) != 2]  # the reminder and the deadline, each with its task
    report.figures["orders without exactly their two timers"] = len(no_timers)
    report.check(not no_timers, f"{len(no_timers)} orders without exactly one reminder and one deadline timer")
    counts = shop.counts()
    mutations = counts["mutations"]
    report.figures["store actions"] = store_action_states(run)
    report.figures["mutations"] = dict(Counter(m["name"] for m in mutations))
    report.check(counts["invalid"] == 0 and counts["unauthorized"] == 0,
                 f"{counts['invalid']} invalid and {counts['unauthorized']} unauthorized requests at the store")
    _held_once(report, mutations, shop_ids)
    due = (HOLD, TAGS, CANCEL) if expired else (HOLD, TAGS)
    undue = [m for m in mutations if m["name"] not in due]
    report.check(not undue, f"{len(undue)} store mutations none due (e.g. {undue[:3]})")
    if expired:
        _once_each(report, by_order(mutations, CANCEL), [gid(i) for i in shop_ids], "cancel of an expired order")
    _refund_figures(report, run, set(generic) if expired else set())
    shop_refunds = run.world.refunds.calls("shopify:")
    report.figures["refund API calls for Shopify orders (the store refunds them)"] = len(shop_refunds)
    emails = emails_by_order(run, keys)
    report.figures["emails by kind"] = dict(Counter(kind for (_, kind), n in emails.items() for _ in range(n)))
    twice = sorted(k for k, n in emails.items() if n > 1)
    report.figures["emails twice"] = len(twice)
    report.check(not twice, f"{len(twice)} emails were sent more than once (e.g. {twice[:3]})")
    for kind in ("link", "reminder", "expired") if expired else ("link",):
        _once_each(report, Counter({k: n for (k, e), n in emails.items() if e == kind}), keys, f"{kind} email")
    report.figures["undelivered outbox rows"] = run.undelivered()
    report.check(report.figures["undelivered outbox rows"] == 0, "outbox rows left undelivered")
    report.check(run.stack_alive(), "the stack exited on its own")
