"""Server-side SQL functions, created by the migrations.

`place_order` is the whole write of an order webhook as one statement (a function
call is one statement: it commits or fails as a whole), run by `UnitOfWork.place_order`.
It lives in the database for speed, not cleverness: pg8000 scans every
statement's text character by character in Python before sending it (about
2 ms for this one as a 2 kB CTE), and PL/pgSQL keeps the plan cached, so the
call is a short `SELECT place_order($1)` with one JSON argument. Its event, timer and
outbox inserts are built from the same typed rows as every other writer's
(`shared.db.recordsets`); a change of their shape re-creates it in a migration step.
"""

from shared.db.recordsets import insert_from_json
from shared.domain.rows import EventRow, OutboxRow, StoreActionRow, TimerRow

PLACE_ORDER = f"""
CREATE OR REPLACE FUNCTION place_order(p jsonb)
RETURNS TABLE (new_delivery boolean, new_session boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
    first_delivery boolean;
    opened boolean := false;
BEGIN
    -- Claim the delivery: the first one inserts, a repeat only counts itself.
    INSERT INTO webhook_events AS w (provider, event_id, order_id)
    VALUES (p->>'provider', p->>'event_id', p->>'order_id')
    ON CONFLICT (provider, event_id) DO UPDATE
        SET deliveries = w.deliveries + 1, last_received_at = now()
    RETURNING w.deliveries = 1 INTO first_delivery;
    IF NOT first_delivery THEN
        RETURN QUERY SELECT false, false;
        RETURN;
    END IF;

    -- Open the session, once per order.
    INSERT INTO verification_sessions (order_id, source, customer_email, customer_id,
                                       order_total, currency, ordered_at, deadline,
                                       store_ordered_at, store_ref)
    VALUES (p->>'order_id', p->>'provider', p->>'customer_email', p->>'customer_id',
            (p->>'order_total')::numeric, p->>'currency',
            (p->>'ordered_at')::timestamptz, (p->>'deadline')::timestamptz,
            (p->>'store_ordered_at')::timestamptz, p->>'store_ref')
    ON CONFLICT (order_id) DO NOTHING
    RETURNING true INTO opened;

    IF opened THEN
        -- A new session gets its events, timers and outbox rows.
        {insert_from_json(EventRow, "p->'events'")};
        {insert_from_json(TimerRow, "p->'timers'")};
        {insert_from_json(StoreActionRow, "p->'store_actions'")};
        {insert_from_json(OutboxRow, "p->'outbox'")};
    ELSE
        -- A new delivery for a known order is recorded as a duplicate.
        INSERT INTO event_log (event_id, order_id, type, occurred_at, request_id, actor, data)
        VALUES ((p->>'duplicate_event_id')::uuid, p->>'order_id', 'order.duplicate',
                (p->>'now')::timestamptz, p->>'request_id', p->>'provider',
                jsonb_build_object('provider', p->>'provider', 'event_id', p->>'event_id'));
    END IF;
    RETURN QUERY SELECT true, coalesce(opened, false);
END
$fn$
"""
