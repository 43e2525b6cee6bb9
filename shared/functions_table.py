"""The deployed functions, one row each: entry point, trigger, exposure and
the secrets each one reads.

This is the list the deploy tests hold `infra/config.sh` (what `deploy.sh`
and `infra/provision.sh` actually do) to: a function gets, as `--set-secrets`
and as Secret Manager access, exactly the secrets of its row. Pure data, no
I/O; importable without any configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Secret:
    """A secret environment variable a function reads, either always or only
    when a deployment setting has a value (e.g. SENDGRID_API_KEY only with
    EMAIL_BACKEND=sendgrid)."""

    variable: str
    when: tuple[str, str] | None = None

    def applies(self, deployment: Mapping[str, str]) -> bool:
        if self.when is None:
            return True
        setting, value = self.when
        return deployment.get(setting, DEPLOYMENT_DEFAULTS[setting]) == value


# The deployment settings that decide which secrets are read, with the
# defaults infra/config.sh gives them.
DEPLOYMENT_DEFAULTS = {
    "DB_IAM_AUTH": "true",
    "EMAIL_BACKEND": "sendgrid",
    "REFUND_BACKEND": "manual",
    "LIGHTSPEED_ENABLED": "true",
}

# Every function connects to the database; only password authentication
# needs a secret for it.
_DATABASE = (Secret("DB_PASSWORD", when=("DB_IAM_AUTH", "false")),)


@dataclass(frozen=True)
class DeployedFunction:
    name: str
    entry_point: str
    signature: str  # "http" or "cloudevent"
    trigger: str | None  # the Pub/Sub topic of a cloudevent function
    public: bool  # reachable from the internet (--ingress-settings=all, unauthenticated)
    secrets: tuple[Secret, ...]
    behind_iap: bool = False  # staff reach it from the internet, through Identity-Aware Proxy

    @property
    def ingress(self) -> str:
        """`all` for what the internet must reach (the webhooks; IAP-protected pages), else
        `internal-only` (Cloud Tasks, Scheduler and Eventarc of the project still reach it)."""
        return "all" if self.public or self.behind_iap else "internal-only"

    def secret_variables(self, deployment: Mapping[str, str] | None = None) -> set[str]:
        """The secrets this function reads under `deployment` (defaults otherwise)."""
        return {s.variable for s in (*self.secrets, *_DATABASE) if s.applies(deployment or {})}


FUNCTIONS: tuple[DeployedFunction, ...] = (
    DeployedFunction(
        "webhook-intake", "webhook_intake", "http", None, public=True,
        secrets=(
            Secret("ORDER_WEBHOOK_SECRET"),
            Secret("VERIFF_SHARED_SECRET"),  # X-HMAC-SIGNATURE of Veriff's webhooks
            Secret("VERIFF_API_KEY"),  # checked against X-AUTH-CLIENT
            Secret("LIGHTSPEED_CLIENT_SECRET", when=("LIGHTSPEED_ENABLED", "true")),
            Secret("CUSTOMER_KEY_SECRET"),  # the pepper of verify once's customer keys
        ),
    ),
    DeployedFunction("timer-expiry", "timer_expiry", "http", None, public=False, secrets=()),
    DeployedFunction("sweep", "sweep", "http", None, public=False, secrets=()),
    DeployedFunction(
        "send-customer-email", "send_customer_email", "cloudevent", "customer-emails", public=False,
        secrets=(
            Secret("VERIFF_API_KEY"),  # creates the Veriff session behind the link
            Secret("SENDGRID_API_KEY", when=("EMAIL_BACKEND", "sendgrid")),
        ),
    ),
    DeployedFunction("record-analytics", "record_analytics", "cloudevent", "verification-events",
                     public=False, secrets=()),
    DeployedFunction(
        "request-refund", "request_refund", "cloudevent", "order-actions", public=False,
        secrets=(Secret("REFUND_API_TOKEN", when=("REFUND_BACKEND", "http")),),
    ),
    DeployedFunction("operator-console", "operator_console", "http", None, public=False,
                     secrets=(Secret("CONSOLE_SECRET"), Secret("CUSTOMER_KEY_SECRET")), behind_iap=True),
)

BY_NAME = {f.name: f for f in FUNCTIONS}
