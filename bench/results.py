"""What a section hands the report: tables of rows, and targets met or missed.

Sections build these from their measurements; :mod:`bench.report` renders them as
Markdown (``docs/benchmarks.md``) and as rich tables in the terminal. Pure data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Section", "Table", "Target", "doc_paragraphs", "mib", "seconds"]


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """One target from issue 7: what was asked, what was measured, and whether it holds.

    ``met`` is None when the measurement could not be made (``measured`` says why).
    """

    name: str
    goal: str
    measured: str
    met: bool | None
    profile: str | None = None  # the bench.profile workload that explains a miss, if any

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


@dataclass
class Section:
    """A numbered section of the report."""

    key: str
    title: str
    intro: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # extra Markdown paragraphs after the tables
    seconds: float = 0.0  # how long the section took to measure


def seconds(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f} s"


def mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} MiB"


def doc_paragraphs(doc: str | None, *indexes: int) -> str:
    """Paragraphs of a module docstring as Markdown, so a section's intro in the report and its
    module's docstring are one text: reST literals and roles become code spans, a ``* `` list
    stays a list, other lines are joined."""
    paragraphs = (doc or "").split("\n\n")
    out = []
    for i in indexes:
        if i >= len(paragraphs):
            continue
        text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", paragraphs[i]).replace("``", "`")
        items: list[str] = []
        for line in text.strip().splitlines():
            line = line.strip()
            if line.startswith("* ") or not items:
                items.append(line)
            else:
                items[-1] += " " + line
        out.append("\n".join(items) if any(x.startswith("* ") for x in items) else " ".join(items))
    return "\n\n".join(out)
