"""Customer emails: template files (in `templates/`) and their renderer."""

from shared.emails.render import KIND_HEADER, build_message, format_deadline, render

__all__ = ["KIND_HEADER", "build_message", "format_deadline", "render"]
