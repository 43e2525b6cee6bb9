"""Every command has exactly one handler (issue 22 items 2 and 6): `shared.handlers.registry.HANDLERS`
maps each command and payload type of `shared.domain.messages`, and each operator command of
`shared.domain.operator_commands`, to its use case; no other module keeps a table of command
types (intake's own `_HANDLERS` was dead code), and the console and the CLI reach the use cases
only through `shared.bootstrap.handle`."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from shared import bootstrap
from shared.console import actions
from shared.domain import messages, operator_commands
from shared.handlers.registry import HANDLERS

ROOT = Path(__file__).resolve().parents[2]


def _dataclasses(module) -> set[type]:
    return {cls for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls)}


OPERATOR_COMMANDS = _dataclasses(operator_commands)
COMMANDS = _dataclasses(messages) | OPERATOR_COMMANDS


def test_every_command_type_has_one_handler_and_the_table_no_other_key():
    assert len(COMMANDS) >= 18 and set(messages.InboundCommand.__args__) <= COMMANDS
    assert set(operator_commands.OperatorCommand.__args__) == OPERATOR_COMMANDS
    assert set(HANDLERS) == COMMANDS
    assert all(callable(handler) for handler in HANDLERS.values())


def test_every_named_action_builds_an_operator_command_of_the_table():
    from shared import operator

    request = actions.Request("42", "alice@example.com", reason="other", note="n", duration="48h",
                              store_action="hold:shopify", age_checked=True)
    built = {name: actions.command(name, request) for name in actions.ACTIONS}
    assert {type(cmd) for cmd in built.values()} | {operator_commands.ForgetCustomer, operator_commands.RetryParked} \
        == OPERATOR_COMMANDS
    assert all(cmd.order_id == "42" and cmd.operator == "alice@example.com" for cmd in built.values())
    assert built["verify"].age_checked and built["verify"].reason == "other" and built["verify"].note == "n"
    assert built["refund-done"].outcome == "refunded" and built["refund-failed"].outcome == "failed"
    assert set(operator.ORDER_ACTIONS) <= set(actions.ACTIONS)  # every CLI action is a console one
    with pytest.raises(actions.BadAction):
        actions.command("delete", request)


def test_the_console_and_the_cli_run_their_commands_through_bootstrap_handle(monkeypatch):
    handled = []
    monkeypatch.setattr(bootstrap, "handle", lambda command, **kw: handled.append(command) or "handled")
    request = actions.Request("42", "alice@example.com", reason="customer_request")
    assert actions.run("cancel", request) == "handled"
    assert actions.retry(7, "alice@example.com") == "handled"
    assert actions.forget("buyer@example.com", "alice@example.com") == "handled"
    assert handled == [operator_commands.CancelOrder("42", "alice@example.com", reason="customer_request"),
                       operator_commands.RetryParked(7, "alice@example.com"),
                       operator_commands.ForgetCustomer("buyer@example.com", "alice@example.com")]


# What the console and the CLI may import from `shared.handlers`: reads that change nothing
# (the funnel's counts, retention's dry run), a result's type, and the actor's one spelling.
READS_AND_NAMES = {"shared.handlers.analytics", "shared.handlers.retention", "shared.handlers.result.Result",
                   "shared.handlers.transitions.operator_actor",
                   "shared.handlers.transitions.CLI_ACTOR"}


def _imported_handlers(path: Path) -> list[str]:
    """What a module imports from `shared.handlers`, and where it relays by itself, beyond those."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared.handlers"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("shared.handlers")]
        elif isinstance(node, ast.Attribute) and node.attr in {"relay", "relay_after_response"}:
            names = [node.attr]
        found += [f"{path.name}:{node.lineno} {name}" for name in names if name not in READS_AND_NAMES]
    return found


def test_the_console_and_the_cli_import_no_use_case_and_relay_nothing():
    """No transition or operator use case is called from the console or the CLI, and neither
    relays: they build a command and call `bootstrap.handle`, whose table picks the use case and
    which relays what it committed."""
    modules = [*sorted((ROOT / "shared" / "console").rglob("*.py")), ROOT / "shared" / "operator.py"]
    assert len(modules) >= 8
    found = [hit for path in modules for hit in _imported_handlers(path)]
    assert found == [], found


# The transition and the operator's use cases (issue 22 item 2): defined in one module.
TRANSITION_CODE = {"apply_effects", "transition", "claim_and_bind", "operator_action", "operator_actor",
                   "extend_deadline", "resend_link", "close_refund", "retry_store_action", "retry_parked",
                   "retry_effect_run", "revoke", "forget"}


def test_the_transition_code_lives_in_one_module():
    defined = {}
    for path in sorted((ROOT / "shared" / "handlers").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            name = getattr(node, "name", "").lstrip("_")
            if isinstance(node, ast.FunctionDef) and name in TRANSITION_CODE:
                defined.setdefault(name, set()).add(path.name)
    assert defined == {name: {"transitions.py"} for name in TRANSITION_CODE}


def test_every_operator_command_is_handled_by_the_transitions_module():
    for command in OPERATOR_COMMANDS:
        assert "transitions." in inspect.getsource(HANDLERS[command]), command
