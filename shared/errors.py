"""One error root with two branches.

Permanent errors are the caller's fault or a fact that retrying cannot change
(bad signature, malformed input): answer 4xx, or acknowledge a task/message.
Transient errors are ours or an upstream's (database down, API timeout):
answer 5xx or raise, so the platform retries.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Root of every error the service raises on purpose."""


class ConfigError(ServiceError):
    """A required setting is missing or malformed; raised at start-up."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class PermanentError(ServiceError):
    """Retrying the same input can never succeed."""

    status = 400
    code = "bad_request"
    public_message: str | None = None  # what a caller is told, when the message names our settings

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unparseable(PermanentError):
    status = 400
    code = "unparseable"


class BadSignature(PermanentError):
    status = 401
    code = "bad_signature"


class Unauthorized(PermanentError):
    status = 401
    code = "unauthorized"


class Forbidden(PermanentError):
    status = 403
    code = "forbidden"


class NotFound(PermanentError):
    status = 404
    code = "not_found"


class MethodNotAllowed(PermanentError):
    status = 405
    code = "method_not_allowed"


class RouteDisabled(PermanentError):
    status = 404
    code = "route_disabled"
    public_message = "no such route"


class BodyTooLarge(PermanentError):
    status = 413
    code = "body_too_large"


class WrongContentType(PermanentError):
    status = 415
    code = "unsupported_media_type"


class InvalidField(PermanentError):
    status = 422
    code = "invalid_field"


class TransientError(ServiceError):
    """A dependency failed; the same input may succeed later."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, component: str = "unknown") -> None:
        super().__init__(message)
        self.component = component


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of a (SQLAlchemy-wrapped) pg8000 error, if the server sent one."""
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict) and isinstance(args[0].get("C"), str):
        return args[0]["C"]
    return None
