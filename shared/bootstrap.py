"""The composition root: builds settings, the database and every adapter, once per instance.

Nothing here runs at import time. Each function calls `container()` on its first
request; tests build a Container from their own Settings.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field

from shared.ports import Clock, SystemClock
from shared.config import EventsBackend, Runtime, Settings, TasksBackend
from shared.errors import ServiceError
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import ensure_schema, require_schema

log = logging.getLogger(__name__)


class built_once(functools.cached_property):
    """`functools.cached_property` that builds its value once per container even when
    requests ask for it together on a fresh instance (3.12's `cached_property` has no
    lock: two threads would each build one, say two relay threads or two Pub/Sub clients).
    Re-entrant, so one part may be built from another."""

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        try:
            return instance.__dict__[self.attrname]
        except KeyError:
            pass
        with instance._building:
            return super().__get__(instance, owner)


@dataclass
class Container:
    settings: Settings
    db: Database
    clock: Clock = field(default_factory=SystemClock)
    _building: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False, compare=False)

    @built_once
    def scheduler(self):
        from shared.adapters.tasks import CloudTasksScheduler, make_scheduler

        scheduler = make_scheduler(self.settings.tasks, self.db)
        if isinstance(scheduler, CloudTasksScheduler):
            # The queue is ensured once per instance, on first use (never at import).
            scheduler.ensure_queue()
        return scheduler

    @built_once
    def publisher(self):
        from shared.adapters.events import make_publisher

        return make_publisher(self.settings.events, self.db)

    @built_once
    def email_sender(self):
        from shared.adapters.email import make_email_sender

        return make_email_sender(self.settings.email)

    @built_once
    def verification_provider(self):
        """The chosen ID provider's adapter (`ID_PROVIDER`, `shared.providers.registry`)."""
        from shared.providers.registry import adapter_for

        return adapter_for(self.settings.inbound.providers)

    @built_once
    def refund_gateway(self):
        from shared.adapters.refunds import make_refund_gateway

        return make_refund_gateway(self.settings.refunds)

    @built_once
    def stores(self):
        """The store connectors this instance's settings configure (`shared.stores.registry`)."""
        from shared.stores.registry import StoreRegistry

        return StoreRegistry.from_settings(self.settings.inbound.stores)

    @built_once
    def relay_after_response(self):
        """This instance's relay thread (`webhook_intake` answers first and relays there)."""
        from shared.handlers.relay_after import RelayAfterResponse

        return RelayAfterResponse(functools.partial(self.relay, batch=RelayAfterResponse.ROWS_PER_BATCH,
                                                    budget_seconds=RelayAfterResponse.BUDGET_SECONDS))

    def relay(self, order_ids: list[str] | None = None, budget_seconds: float = 2.0, batch: int | None = None):
        """Deliver outbox rows now; what fails stays for the sweeper. Never raises: it runs
        after a commit, and the caller must answer what happened, not how the relay fared."""
        from shared.handlers.relay import BATCH, RelayReport, relay

        try:
            return relay(self.db, self.scheduler, self.publisher, order_ids=order_ids,
                         budget_seconds=budget_seconds, batch=batch or BATCH)
        except ServiceError as exc:
            log.warning("outbox relay deferred to the sweeper: %s", exc)
        except Exception:
            log.exception("outbox relay failed; deferred to the sweeper")
        return RelayReport()


def build(settings: Settings, *, migrate: bool = False) -> Container:
    """The container. A function only checks that the schema is the one its code needs (it
    refuses to serve otherwise, naming the versions); `migrate=True` is for the schema's
    owner (the local stack's start; in the cloud, the deploy step `shared.db.upgrade`)."""
    db = Database(make_engine(settings.database))
    try:
        ensure_schema(db) if migrate else require_schema(db)
    except BaseException:
        db.engine.dispose()
        raise
    return Container(settings=settings, db=db)


@functools.cache
def settings() -> Settings:
    """The instance's settings, read and validated once (ConfigError names the variable)."""
    return Settings.from_env()


_container: Container | None = None
_container_lock = threading.Lock()


def container() -> Container:
    """The instance-wide container, built once on first use, under a lock: requests that
    arrive together on a fresh instance share one pool (not cached while it fails)."""
    global _container
    if _container is None:
        with _container_lock:
            if _container is None:
                _container = build(settings())
    return _container


def handle(command, *, request_id: str | None = None, relay_after_response: bool = False):
    """Run the command's use case with this instance's dependencies, then relay exactly the
    outbox rows its units of work committed (what fails there stays for the sweeper): before
    returning, or, with `relay_after_response`, on the instance's relay thread while the
    caller answers."""
    from shared.db.unit_of_work import committed_orders
    from shared.handlers.registry import HANDLERS

    c = container()
    with committed_orders() as orders:
        outcome = HANDLERS[type(command)](c, command, request_id)
    if orders and relay_after_response:
        c.relay_after_response.submit(orders)
    elif orders:
        c.relay(orders)
    return outcome


# How long a sweep spends relaying the due backlog (it runs every minute).
SWEEP_RELAY_SECONDS = 20.0


def sweep(work):
    """Run the sweep's `work(container)`, then relay every due outbox row: what its own units of
    work committed and what any dispatch's relay left (it failed, or its instance died), within
    SWEEP_RELAY_SECONDS. (work's outcome, the relay's report). The dispatcher's other form:
    `handle` relays a command's own orders; this, for the sweeper, the backlog."""
    c = container()
    outcome = work(c)
    return outcome, c.relay(budget_seconds=SWEEP_RELAY_SECONDS)


def settings_for(function: str, *required: str) -> Settings:
    """Settings with the variables `function` cannot run without (ConfigError names one);
    checked once per settings, not on every request."""
    current = settings()
    if (function, required) not in _checked:
        for variable in required:
            if variable == "CUSTOMER_KEY_SECRET":  # required only while verify once is on
                current.reuse.pepper()
            elif variable == "ID_PROVIDER":  # the chosen ID provider's webhook secrets
                from shared.providers.registry import require_webhook_secrets

                require_webhook_secrets(current.inbound.providers)
            else:
                current.require(variable)
        _checked.add((function, required))
    return current


_checked: set[tuple[str, tuple[str, ...]]] = set()  # what settings_for found set in settings()


def check_at_start(function: str, *required: str) -> None:
    """Validate configuration at import when this process serves `function`.

    Cloud Functions sets FUNCTION_TARGET to the one it serves (and `main.py` imports only that
    function's module); a module imported for any other reason (tests, the deploy tests) checks
    nothing here.
    """
    if function in Runtime.from_env().function_targets:
        preload(settings_for(function, *required))


def preload(settings: Settings) -> None:
    """Import now what this instance's first request would otherwise import: the database
    driver (SQLAlchemy loads it on the first connect) and the configured adapters with
    their Google clients (half a second for Cloud Tasks and Pub/Sub). Modules only: no
    connection, no client, no thread, so this is safe before gunicorn forks its worker."""
    import pg8000.dbapi  # noqa: F401

    import shared.adapters.events  # noqa: F401
    import shared.adapters.tasks  # noqa: F401
    import shared.handlers.relay  # noqa: F401
    import shared.handlers.relay_after  # noqa: F401

    if settings.tasks.backend == TasksBackend.CLOUD:
        import google.cloud.tasks_v2  # noqa: F401
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport  # noqa: F401
    if settings.events.backend == EventsBackend.PUBSUB:
        import google.cloud.pubsub_v1  # noqa: F401


def reset() -> None:
    """Forget the cached settings and container, closing its pool (tests, restarts)."""
    global _container
    with _container_lock:
        if _container is not None:
            if "relay_after_response" in vars(_container):  # its thread was made: end it
                _container.relay_after_response.close()
            _container.db.engine.dispose()
        _container = None
    settings.cache_clear()
    _checked.clear()
