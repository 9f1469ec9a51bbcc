"""What a section hands the report: tables of rows, and targets met or missed.

Sections build these from their measurements; :mod:`bench.report` renders them as
Markdown (``docs/benchmarks.md``) and as rich tables in the terminal. Pure data.
"""

from __future__ import annotations

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
    """Paragraphs of a module docstring joined into one line each, so a section's Markdown
    intro and its module's docstring are the same text."""
    paragraphs = (doc or "").split("\n\n")
    return " ".join(" ".join(paragraphs[i].split()) for i in indexes if i < len(paragraphs))
