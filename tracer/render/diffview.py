"""``cogtrace diff`` in a terminal: one table per section of :class:`tracer.diff.TraceDiff`.

One cause often shows in many places (a longer prompt changes the shape of every module; one
config key reaches every call that receives the Namespace). So rows are grouped: in the
construction and hook sections, the same change of the same fact is one row listing where;
in the shapes section, the same change of a shape is one row, whatever the module. Each
section shows at most ``limit`` rows and says how many it left out.
"""

from __future__ import annotations

import json
from typing import Any

from ..diff import SECTIONS, Difference, TraceDiff, fold_differences

__all__ = ["render_diff_text", "value_text"]

MAX_VALUE = 72  # characters of one value before it is cut
LONG_VALUE = 400  # meta and token values: the template text is the point
SHOWN_PLACES = 3  # places named in a grouped row before "+N more"

_TITLES = {
    "meta": "Run (meta)",
    "construction": "Construction calls (aligned by their place in the call tree)",
    "hooks": "Hook tables (who serves each hook; dispatches)",
    "modules": "Modules (tree and parameter shapes)",
    "shapes": "Shapes (first call of each module and hook dispatch)",
    "generation": "Generation steps",
    "tokens": "Token layout",
}


def value_text(value: Any, *, limit: int = MAX_VALUE) -> str:
    """A JSON value as one short line; '—' for absent."""
    if value is None:
        return "—"
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = "; ".join(value) if value else "(none)"
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_key(section: str, key: str) -> str:
    return key.rsplit(" / ", 1)[-1] if section == "construction" else key


def grouped(section: str, found: list[Difference]) -> list[tuple[str, str, Difference]]:
    """Rows of one section: (where, what, a representative difference)."""
    if section in ("meta", "generation", "tokens", "modules"):
        return [(key if n == 1 else f"{key} ×{n}", d.field, d) for key, n, d in fold_differences(found)]
    groups: dict[tuple[str, str, str, str], list[Difference]] = {}
    for d in found:
        what = "shape" if section == "shapes" else d.field
        groups.setdefault((d.kind, what, repr(d.a), repr(d.b)), []).append(d)
    rows = []
    for (_, what, _, _), members in groups.items():
        places = [_short_key(section, m.key) + (f" {m.field}" if section == "shapes" else "") for m in members]
        places = list(dict.fromkeys(places))
        where = ", ".join(places[:SHOWN_PLACES])
        if len(places) > SHOWN_PLACES:
            where += f" (+{len(places) - SHOWN_PLACES} more)"
        rows.append((where, what, members[0]))
    return rows


def render_diff_text(diff: TraceDiff, *, width: int = 140, limit: int = 40, styles: bool = False) -> str:
    """The differences as text tables; ``limit`` rows per section (0: all)."""
    from rich.table import Table
    from rich.text import Text

    from .terminal import export_text

    items: list[Any] = []
    head = Text()
    head.append("A: ", style="bold")
    head.append(diff.a_name + "\n")
    head.append("B: ", style="bold")
    head.append(diff.b_name)
    items.append(head)
    counts = diff.counts()
    if diff.same:
        items.append(Text("no differences", style="bold green"))
        return export_text(items, width=width, styles=styles)
    total = sum(counts.values())
    items.append(Text(f"{total} differences: " + " · ".join(f"{s} {n}" for s, n in counts.items()),
                      style="bold"))
    value_width = max(24, (width - 50) // 2)
    for section in SECTIONS:
        found = diff.of(section)
        if not found:
            continue
        groups = grouped(section, found)
        shown = groups if limit <= 0 else groups[:limit]
        long = section in ("meta", "tokens")
        table = Table(title=_TITLES[section], title_justify="left", show_lines=False, expand=False)
        table.add_column("where", overflow="fold", max_width=48)
        table.add_column("what", overflow="fold", max_width=28)
        table.add_column("A", overflow="fold", max_width=value_width)
        table.add_column("B", overflow="fold", max_width=value_width)
        for where, field, d in shown:
            what = field or {"only_a": "only in A", "only_b": "only in B", "changed": ""}[d.kind]
            style = "red" if d.kind == "only_a" else "green" if d.kind == "only_b" else ""
            cut = LONG_VALUE if long else MAX_VALUE
            table.add_row(where, what, Text(value_text(d.a, limit=cut), style=style if d.a is not None else "dim"),
                          Text(value_text(d.b, limit=cut), style=style if d.b is not None else "dim"))
        items.append(table)
        if len(groups) > len(shown):
            items.append(Text(f"… {len(groups) - len(shown)} more rows in this section (--all shows them)",
                              style="dim"))
    return export_text(items, width=width, styles=styles)
