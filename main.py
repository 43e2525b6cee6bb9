"""Cloud Functions entry points; each is deployed as its own function (see deploy.sh)."""

from functions.webhook_intake import webhook_intake  # noqa: F401
