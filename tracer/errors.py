"""Errors a user can cause and fix; the CLI prints their message as one line, no traceback."""

from __future__ import annotations

__all__ = ["OutputError", "TracingError", "UserError"]


class UserError(Exception):
    """Bad input from the user (a path, a config, an image, an option). The message is one
    line that names the bad value and what was expected."""


class OutputError(UserError):
    """An output location that cannot be written (read-only, not a folder, full disk); the
    message names the path and the operating system's reason."""


class TracingError(RuntimeError):
    """Tracing cannot start or was used wrongly (e.g. a nested ``trace()`` block, or a second
    thread entering one while another is active)."""
