"""Every command has exactly one handler (issue 22 item 6): `shared.handlers.registry.HANDLERS`
maps each command and payload type of `shared.domain.messages` to its use case, and no other
module keeps a table of command types (intake's own `_HANDLERS` was dead code)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

from shared.domain import messages
from shared.handlers.registry import HANDLERS

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {cls for _, cls in inspect.getmembers(messages, inspect.isclass)
            if cls.__module__ == messages.__name__ and dataclasses.is_dataclass(cls)}


def test_every_command_type_has_one_handler_and_the_table_no_other_key():
    assert len(COMMANDS) >= 9 and set(messages.InboundCommand.__args__) <= COMMANDS
    assert set(HANDLERS) == COMMANDS
    assert all(callable(handler) for handler in HANDLERS.values())


def _command_tables(path: Path) -> list[int]:
    names = {cls.__name__ for cls in COMMANDS}
    return [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Dict)
            and any(isinstance(key, (ast.Name, ast.Attribute)) and getattr(key, "id", getattr(key, "attr", None))
                    in names for key in node.keys)]


def test_no_other_module_maps_command_types_to_handlers():
    found = {str(path.relative_to(ROOT)): lines
             for path in sorted([*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")])
             if (lines := _command_tables(path))}
    assert set(found) == {"shared/handlers/registry.py"}, found
