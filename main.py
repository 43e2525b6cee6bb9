"""Cloud Functions entry points; each is deployed as its own function (see deploy.sh)."""

from functions.record_analytics import record_analytics  # noqa: F401
from functions.request_refund import request_refund  # noqa: F401
from functions.send_customer_email import send_customer_email  # noqa: F401
from functions.sweep import sweep  # noqa: F401
from functions.timer_expiry import timer_expiry  # noqa: F401
from functions.webhook_intake import webhook_intake  # noqa: F401
from functions.operator_console import operator_console  # noqa: F401
