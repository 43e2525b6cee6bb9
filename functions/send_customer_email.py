"""`send_customer_email`: topic `customer-emails` — verification link, reminders, outcome emails."""

from __future__ import annotations

from functions._cloudevent import subscriber
from shared import bootstrap
from shared.domain.messages import EmailJob

NAME = "send_customer_email"
bootstrap.check_at_start(NAME)

send_customer_email = subscriber(NAME, EmailJob)
