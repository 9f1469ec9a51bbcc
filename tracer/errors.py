"""Errors a user can cause and fix; the CLI prints their message as one line, no traceback."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input from the user (a path, a config, an image, an option). The message is one
    line that names the bad value and what was expected."""
