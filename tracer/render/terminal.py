"""Turn rich renderables into plain text, so every terminal view can be tested and piped.

Views build rich objects (tables, trees) and hand them here; the CLI prints the text (with
colour when stdout is a terminal), tests compare it with golden files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

__all__ = ["export_text"]


def export_text(renderables: Sequence[Any], *, width: int = 140, styles: bool = False) -> str:
    """Render ``renderables`` at a fixed width; ``styles=True`` keeps ANSI colour codes."""
    from rich.console import Console

    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=styles,
                      color_system="standard" if styles else None, highlight=False, soft_wrap=False)
    for item in renderables:
        console.print(item)
    text = console.export_text(styles=styles)
    # Rich pads table rows to the full width; trailing blanks are noise in golden files.
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
