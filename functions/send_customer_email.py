"""`send_customer_email`: topic `customer-emails` — verification link, reminders, outcome emails."""

from __future__ import annotations

from functions._cloudevent import subscriber
from shared import bootstrap
from shared.domain.messages import EmailJob
from shared.handlers import subscribers

NAME = "send_customer_email"
bootstrap.check_at_start(NAME)


@subscriber(NAME, EmailJob)
def send_customer_email(job: EmailJob) -> str:
    c = bootstrap.container()
    outcome = subscribers.send_email(c.db, c.settings, c.email_sender, c.verification_provider, job,
                                     now=c.clock.now())
    if outcome == "sent":
        c.relay([job.order_id])
    return outcome
