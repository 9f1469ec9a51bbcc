"""One self-contained HTML file with every view of a trace: ``report.html``.

The page is the explorer (:mod:`tracer.render.explorer`): foldable call and module trees,
search, a detail panel with source links, zoomable diagrams, the token layout with hover,
keyboard navigation and a print view — all inline, so the file opens from disk, in a mail
attachment or on a machine with no network, and shows the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..schema import Trace

__all__ = ["render_html"]


def render_html(trace: Trace, *, timings: bool = True, source_roots: Sequence[str] = ()) -> str:
    """The whole report as one HTML string (write it with ``encoding='utf-8'``)."""
    from .explorer import render_explorer

    return render_explorer(trace, timings=timings, source_roots=source_roots)
