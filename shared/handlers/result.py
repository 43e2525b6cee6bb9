"""What every use case returns: one `Result`, whose status callers compare as an enum."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ResultStatus(StrEnum):
    ACCEPTED = "accepted"  # the input did what it asks (a state change, a refund call, a count)
    DUPLICATE = "duplicate"  # done before: nothing is done again
    IGNORED = "ignored"  # nothing to do (unknown order, a closed session, a stale input)
    SENT = "sent"  # a customer email went out
    SKIPPED = "skipped"  # an email that can never be built or sent: recorded, never retried


@dataclass(frozen=True)
class Result:
    status: ResultStatus
    order_id: str | None = None
    detail: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is ResultStatus.ACCEPTED

    def to_dict(self) -> dict[str, str]:
        body = {"status": str(self.status)}
        if self.order_id:
            body["orderId"] = self.order_id
        if self.detail:
            body["detail"] = self.detail
        return body

    def __str__(self) -> str:
        return f"{self.status} ({self.detail})" if self.detail else str(self.status)
