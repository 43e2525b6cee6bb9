"""`operator_console`: staff pages behind Identity-Aware Proxy (CONSOLE_AUTH=dev: 127.0.0.1 only, signed in with
the local run's CONSOLE_DEV_TOKEN)."""

from __future__ import annotations

import functools

import flask

from functions._http import request_id_of
from shared import bootstrap
from shared import log as logctx
from shared import trace as tracing
from shared.config import Runtime
from shared.console import app, auth

NAME = "operator_console"
REQUIRED = ("CONSOLE_SECRET", "CUSTOMER_KEY_SECRET")
bootstrap.check_at_start(NAME, *REQUIRED)
if NAME in Runtime.from_env().function_targets:  # behind IAP, no list: refuse to start
    auth.require_allowlist(bootstrap.settings().console)
logctx.configure()


@functools.cache
def _keys(url: str) -> auth.PublicKeys:
    return auth.PublicKeys(url)


def operator_console(request: flask.Request) -> flask.Response:
    request_id = request_id_of(request)
    with tracing.activated(tracing.continued(request.headers)), \
            logctx.bound(request_id=request_id, function=NAME):
        response = app.handle(request, lambda: bootstrap.settings_for(NAME, *REQUIRED), _keys)
        response.headers["X-Request-ID"] = request_id
        return app.secure(response)
