"""What every HTTP entry point shares: request ids, log context, headers, error mapping."""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import flask
import functions_framework
from werkzeug.exceptions import BadRequest, HTTPException

from shared import log as logctx
from shared import trace as tracing
from shared.errors import (  # noqa: F401 - NotFound, MethodNotAllowed: the entry points' errors
    BodyTooLarge, ConfigError, MethodNotAllowed, NotFound, PermanentError, TransientError, WrongContentType,
)

log = logging.getLogger("functions")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def read_body(request: flask.Request, content_type: str | tuple[str, ...], limit: int) -> bytes:
    """The raw body, refused before it is read when its type (one of `content_type`, if a tuple)
    or declared size is wrong."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"body is over {limit} bytes")
    accepted = (content_type,) if isinstance(content_type, str) else content_type
    if request.mimetype not in accepted:
        raise WrongContentType(f"expected {' or '.join(accepted)}")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge(f"body is over {limit} bytes")
    return body


def request_id_of(request: flask.Request) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def json_response(status: int, body: dict[str, Any], request_id: str) -> flask.Response:
    body = {**body, "requestId": request_id}
    response = flask.Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["X-Request-ID"] = request_id
    response.headers.update(SECURITY_HEADERS)
    return response


UNAVAILABLE = "temporarily unavailable"


def error_response(exc: Exception, request_id: str) -> flask.Response:
    """The public answer to an error: a caller's mistake is named (a field, a header), but
    nothing of ours is (no variable, component, schema version or command): that is in
    the log line only."""
    if isinstance(exc, PermanentError):
        body = {"error": exc.public_message or str(exc), "code": exc.code}
        if exc.field:
            body["field"] = exc.field
        return json_response(exc.status, body, request_id)
    if isinstance(exc, (TransientError, ConfigError)):
        return json_response(503, {"error": UNAVAILABLE}, request_id)
    return json_response(500, {"error": "internal error"}, request_id)


def http_entry(name: str, route_of: Callable[[flask.Request], str] | None = None) -> Callable:
    """Wrap an http function: bind log context, map typed errors to statuses, and register it
    with functions-framework as an http function (the signature type lives in the code).

    Every request ends with one `http.answered` line naming its route (`route_of(request)`,
    from a fixed set: never a raw path, which may carry an id; the function's name when not
    given), status and status class: the log-based metric `http_answers` counts them.

    The wrapped function returns (status, body dict)."""
    logctx.configure()

    def decorate(handler: Callable[[flask.Request, str], tuple[int, dict]]) -> Callable:
        @functools.wraps(handler)
        def entry(request: flask.Request) -> flask.Response:
            request_id = request_id_of(request)
            # The caller's trace (a Cloud Task carries its order's), or a fresh one at a webhook.
            with tracing.activated(tracing.continued(request.headers)), \
                    logctx.bound(request_id=request_id, function=name):
                try:
                    status, body = handler(request, request_id)
                except HTTPException:
                    raise  # a malformed body (MalformedBody) or another of werkzeug's: Flask answers it
                except PermanentError as exc:
                    log.warning("rejected: %s", exc, extra={"labels": {"status": str(exc.status)}})
                    response = error_response(exc, request_id)
                except (TransientError, ConfigError) as exc:
                    log.error("unavailable: %s", exc)
                    response = error_response(exc, request_id)
                except Exception as exc:
                    log.exception("unhandled error")
                    response = error_response(exc, request_id)
                else:
                    response = json_response(status, body, request_id)
                _answered(response.status_code, route_of(request) if route_of else name)
                return response

        return functions_framework.http(entry)

    return decorate


def _answered(status: int, route: str) -> None:
    log.info("answered %s", status, extra={"labels": {
        "event": "http.answered", "route": route, "status": str(status), "status_class": f"{status // 100}xx"}})


# ---- the edge: a request body the server cannot parse ----------------------------------

try:  # what gunicorn (the server functions-framework runs) raises while reading a broken body
    from gunicorn.http.errors import ParseException as _ServerParseError
except ImportError:  # pragma: no cover - another server
    class _ServerParseError(Exception):
        pass

_UNREADABLE = (_ServerParseError, OSError)  # werkzeug's dev server: OSError("Invalid chunk header")


class MalformedBody(BadRequest):
    """The server could not read the request body (a chunk size `zz`, a truncated chunk)."""

    description = "malformed request"


class _GuardedInput:
    """`wsgi.input` that turns the server's parse error into MalformedBody once, then reads as
    empty (functions-framework drains the body after every request: it must not raise again)."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.failed = False

    def _guard(self, read, *args):
        if self.failed:
            return b""
        try:
            return read(*args)
        except _UNREADABLE:
            self.failed = True
            raise MalformedBody() from None

    def read(self, *args):
        return self._guard(self._stream.read, *args)

    def readline(self, *args):
        return self._guard(self._stream.readline, *args)

    def readlines(self, *args):
        return [] if self.failed else self._guard(self._stream.readlines, *args)

    def __iter__(self):
        while line := self.readline():
            yield line


class MalformedRequestGuard:
    """WSGI middleware on every function's app: a body the server cannot parse is answered 400
    (a generic JSON body), wherever it was found: in our handler, in Flask's form parsing or in
    functions-framework's own after-request drain (which Flask answers 500 otherwise)."""

    def __init__(self, app: Callable, name: str) -> None:
        self.app, self.name = app, name

    def __call__(self, environ: dict, start_response: Callable):
        guarded = _GuardedInput(environ.get("wsgi.input"))
        environ["wsgi.input"] = guarded
        started: list = []

        def hold(status, headers, exc_info=None):
            started[:] = [status, headers, exc_info]
            return lambda data: None  # no function of ours writes through write()

        body = self.app(environ, hold)
        if not guarded.failed:
            start_response(*started)
            return body
        if hasattr(body, "close"):
            body.close()
        with logctx.bound(function=self.name):
            log.warning("malformed request body refused", extra={"labels": {"status": "400"}})
        payload = json.dumps({"error": "malformed request", "code": "malformed_request"}).encode()
        start_response("400 Bad Request", [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                                           ("Connection", "close"), *SECURITY_HEADERS.items()])
        return [payload]


def guard_current_app() -> None:
    """Put MalformedRequestGuard around the app functions-framework is building (it loads the
    entry point inside that app's context); once per app."""
    if not flask.has_app_context():
        return
    app = flask.current_app._get_current_object()
    if not isinstance(app.wsgi_app, MalformedRequestGuard):
        app.wsgi_app = MalformedRequestGuard(app.wsgi_app, app.name)
        # Flask logs what functions-framework's after-request drain raises as "Exception on ..."
        # at ERROR, with its stack (an Error Reporting event): a malformed body is the sender's
        # fault, answered 400 and logged once as a warning by the guard.
        app.logger.addFilter(_not_a_malformed_body)


def _not_a_malformed_body(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], MalformedBody))
