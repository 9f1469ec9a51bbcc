"""Shared machinery of the walkthroughs: step headers, pauses, SAT source display, two languages.

Every walkthrough is a plain script that calls the real SAT functions in the article's order;
this module only does the *presentation*, so that the scripts themselves stay readable:

* :class:`Walkthrough` — one object per run. ``w.step(en=..., zh=...)`` starts a numbered step
  (and first waits for Enter, unless ``--no-pause``); ``w.say`` prints a paragraph;
  ``w.source(fn, focus=...)`` prints where ``fn`` lives in the *installed* SAT (``file:line``,
  found with :mod:`inspect`, so it is right for whatever SAT version you have) and the lines
  that matter; ``w.table`` prints an aligned table.
* :func:`default_lang` — ``zh`` when the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``) is
  Chinese, else ``en``. Every text is written twice, inline, next to the code it explains:
  ``w.say(en="...", zh="...")``.
* :func:`namespace_diff` — what a SAT argument function changed in an ``argparse.Namespace``.
* :func:`watch_calls` — a small, temporary function wrapper that prints nested calls (the
  toolkit's tracer, :func:`tracer.trace`, is the full version of the same idea).
* :func:`run` — calls a script's ``main()`` so that a user error is one line, not a traceback.

Nothing here imports torch or SAT: the scripts import those themselves, visibly.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

__all__ = [
    "DEFAULT_CONFIG",
    "LANGS",
    "REPO",
    "Walkthrough",
    "default_lang",
    "namespace_diff",
    "run",
    "short_location",
    "short_repr",
    "watch_calls",
]

LANGS = ("en", "zh")
REPO = Path(__file__).resolve().parent.parent
# The article studies cogvlm-grounding-generalist; its tiny twin runs on a CPU in seconds.
DEFAULT_CONFIG = "configs/tiny/cogvlm-grounding-generalist"


def default_lang(environ: Mapping[str, str] | None = None) -> str:
    """The language of the locale, in POSIX precedence: LC_ALL, then LC_MESSAGES, then LANG.

    ``zh_CN.UTF-8``, ``zh_TW``, ``zh`` -> ``"zh"``; anything else (or nothing set) -> ``"en"``.
    """
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:  # the first one set decides, as in C's setlocale
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def short_repr(value: Any, width: int = 60) -> str:
    """``repr`` cut to ``width`` characters, so one long value cannot flood a table."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def namespace_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Rows ``(key, before, after)`` for every key added, removed or changed, sorted by key.

    Take ``dict(vars(args))`` *copies* before and after the call: SAT's functions sometimes
    return the same Namespace they were given, mutated.
    """
    missing = object()
    rows = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, missing), after.get(key, missing)
        if old is missing or new is missing or old != new:
            rows.append((key, "—" if old is missing else short_repr(old), "—" if new is missing else short_repr(new)))
    return rows


def _unwrap(obj: Any) -> Any:
    """The plain function behind a bound method, classmethod, staticmethod or decorator."""
    obj = getattr(obj, "__func__", obj)
    return inspect.unwrap(obj)


def source_location(obj: Any) -> tuple[Path, int, list[str]]:
    """``(file, first line, source lines)`` of a function or class, via :mod:`inspect`."""
    target = _unwrap(obj)
    file = inspect.getsourcefile(target)
    if file is None:
        raise OSError(f"no source file for {obj!r}")
    lines, start = inspect.getsourcelines(target)
    return Path(file), start, lines


def display_path(path: Path) -> str:
    """Absolute path (terminals and VS Code make ``/abs/file.py:123`` clickable)."""
    return str(path.resolve())


def short_location(obj: Any) -> str:
    """``sat/model/base_model.py:80`` or ``tracer/cogvlm/model.py:38``: short enough for a log line.

    Paths inside an installed package are shown from the package's top folder (``sat/…``),
    paths in this repository from the repository root.
    """
    try:
        path, start, _ = source_location(obj)
    except (OSError, TypeError):
        return "?"
    path = path.resolve()
    parts = path.parts
    if "site-packages" in parts:
        return f"{Path(*parts[parts.index('site-packages') + 1:])}:{start}"
    try:
        return f"{path.relative_to(REPO)}:{start}"
    except ValueError:
        return f"{path}:{start}"


class Walkthrough:
    """One run of a walkthrough script: its language, its pauses, its step counter.

    Build it with :meth:`from_argv`, which adds the options every walkthrough has
    (``--lang``, ``--no-pause``) to the script's own.
    """

    def __init__(self, *, lang: str = "en", pause: bool = True, stream: TextIO | None = None,
                 stdin: TextIO | None = None) -> None:
        if lang not in LANGS:
            raise ValueError(f"lang {lang!r}: expected one of {list(LANGS)}")
        self.lang = lang
        self.pausing = pause
        self.stdin = stdin or sys.stdin
        self.console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)
        if not self.console.is_terminal:
            # Piped or captured (CI, tests, `| less`): rich would assume 80 columns and wrap tables.
            self.console.width = 120
        self.step_number = 0

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_argv(cls, doc: str | None, argv: Sequence[str] | None = None,
                  add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                  ) -> tuple[Walkthrough, argparse.Namespace]:
        """Parse the common options plus the script's own; return the walkthrough and the args."""
        title = (doc or "").strip().splitlines()[0] if doc else None
        parser = argparse.ArgumentParser(description=title,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--lang", choices=LANGS, default=default_lang(),
                            help="language of the explanations (default: from LANG / LC_ALL; zh* -> zh)")
        parser.add_argument("--no-pause", action="store_true",
                            help="run straight through without waiting for Enter (for CI)")
        if add_arguments is not None:
            add_arguments(parser)
        args = parser.parse_args(argv)
        return cls(lang=args.lang, pause=not args.no_pause), args

    # -- text --------------------------------------------------------------------------------
    def t(self, en: str, zh: str) -> str:
        """The text in this run's language (both are written next to each other in the script)."""
        return zh if self.lang == "zh" else en

    def print(self, text: str = "", style: str | None = None) -> None:
        # markup=False: CogVLM's prompts contain "[INST]" and "[[x0,y0,x1,y1]]", which rich
        # would otherwise read as style tags.
        self.console.print(Text(text, style=style or ""), markup=False)

    def title(self, en: str, zh: str) -> None:
        """The walkthrough's title, once at the top."""
        text = self.t(en, zh)
        self.print("=" * 78, "bold")
        self.print(text, "bold")
        self.print("=" * 78, "bold")
        hint = self.t("Enter: next step · q + Enter: quit · --no-pause: run through · --lang zh: 中文",
                      "回车：下一步 · q 回车：退出 · --no-pause：一口气跑完 · --lang en: English")
        if self.pausing:
            self.print(hint, "dim")

    def step(self, en: str, zh: str) -> None:
        """Start the next numbered step; waits for Enter first (except before step 1)."""
        if self.step_number:
            self.pause()
        self.step_number += 1
        label = self.t("Step", "步骤")
        self.print()
        self.print(f"── {label} {self.step_number}: {self.t(en, zh)} " + "─" * 8, "bold cyan")

    def say(self, en: str, zh: str) -> None:
        """A paragraph of explanation."""
        self.print(self.t(en, zh))

    def note(self, en: str, zh: str) -> None:
        """A side remark (a trap, a reason), set off in colour."""
        self.print("  ↳ " + self.t(en, zh), "yellow")

    def value(self, label: str, value: Any) -> None:
        """One ``label = value`` line. Labels that are code names stay as they are; pass
        ``w.t(en, zh)`` for a label that is prose."""
        self.print(f"  {label} = {value}")

    def done(self, en: str = "Done.", zh: str = "完成。") -> None:
        self.print()
        self.print(self.t(en, zh), "bold green")

    # -- pausing -----------------------------------------------------------------------------
    def pause(self) -> None:
        """Wait for Enter. ``q`` quits; end of input (e.g. ``< /dev/null``) stops pausing."""
        if not self.pausing:
            return
        self.console.print(Text(self.t("  [Enter ⏎] ", "  [回车 ⏎] "), style="dim"), end="", markup=False)
        self.console.file.flush()
        line = self.stdin.readline()
        if not line:  # EOF: nobody is there to press Enter; run the rest straight through
            self.pausing = False
            self.print()
            return
        if line.strip().lower() in ("q", "quit", "exit"):
            self.print(self.t("Stopped.", "已退出。"))
            raise SystemExit(0)

    # -- SAT source --------------------------------------------------------------------------
    def source(self, obj: Any, *, focus: str | None = None, before: int = 2, after: int = 6,
               lines: int = 8, label: str | None = None) -> None:
        """Show where ``obj`` is defined (``file:line``) and the lines that matter.

        Without ``focus``: the first ``lines`` lines of the definition. With ``focus``: the
        first line containing that text, with ``before``/``after`` lines of context — for a
        long SAT function such as ``get_model``, the one call the step is about.
        """
        name = label or getattr(_unwrap(obj), "__qualname__", repr(obj))
        try:
            path, start, src = source_location(obj)
        except (OSError, TypeError) as e:
            self.print(f"  {name}: {self.t('source not available', '无法获取源码')} ({e})", "dim")
            return
        first, count, hit = 0, min(lines, len(src)), None
        if focus is not None:
            hits = [i for i, line in enumerate(src) if focus in line]
            if hits:
                hit = hits[0]
                first = max(0, hit - before)
                count = min(len(src) - first, hit - first + after + 1)
        self.print(f"  📍 {name}  {display_path(path)}:{start}", "green")
        if hit is not None:
            self.print(f"     {self.t('focus', '重点')}: {display_path(path)}:{start + hit}  ({focus})", "green")
        code = "".join(src[first:first + count]).rstrip("\n")
        highlight = {start + hit} if hit is not None else set()
        if self.console.is_terminal:
            self.console.print(Syntax(code, "python", line_numbers=True, start_line=start + first,
                                      highlight_lines=highlight, word_wrap=False, indent_guides=False,
                                      theme="ansi_dark"))
        else:
            for offset, text in enumerate(code.splitlines()):
                number = start + first + offset
                mark = "▶" if number in highlight else " "
                self.print(f"  {mark}{number:5d} │ {text}")

    # -- tables ------------------------------------------------------------------------------
    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
              justify: Sequence[str] | None = None) -> None:
        """An aligned table; cells are plain text (never rich markup)."""
        table = Table(title=title, show_lines=False, header_style="bold", title_justify="left")
        for i, header in enumerate(headers):
            table.add_column(header, justify=(justify[i] if justify else "left"),  # type: ignore[arg-type]
                             overflow="fold")
        for row in rows:
            table.add_row(*(Text(str(cell)) for cell in row))
        self.console.print(table)


def walkthrough_folder(number: str) -> Path:
    """Where a walkthrough writes its pictures without ``--out``: one fixed folder per
    walkthrough in the toolkit's cache, reused by every run (no new temporary folder each time),
    so the printed path still opens after the script ends."""
    from tracer.cogvlm.checkpoint import cache_root

    return cache_root() / "walkthroughs" / number


def run(main: Callable[[], int]) -> int:
    """Call a walkthrough's ``main()``: a user error (bad --config, missing image) is one line,
    Ctrl+C is a quiet stop; anything else is a real bug and keeps its traceback."""
    from tracer.errors import UserError  # light: no torch, no SAT

    try:
        return main()
    except UserError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{Path(sys.argv[0]).name}: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------------------------
# Watching calls: a tiny, temporary function wrapper (the toolkit's tracer does this properly)
# --------------------------------------------------------------------------------------------
def describe(value: Any) -> str:
    """A short, stable text for an argument: small values as repr, anything else by type."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, (str, os.PathLike)):
        return short_repr(str(value), 50)
    if isinstance(value, argparse.Namespace):
        return f"Namespace({len(vars(value))} keys)"
    if isinstance(value, dict):
        return f"dict({len(value)} keys)" if value else "{}"
    if isinstance(value, type):
        return value.__name__
    return type(value).__name__


@contextlib.contextmanager
def watch_calls(w: Walkthrough, targets: Sequence[tuple[Any, str]],
                show_kwargs: Sequence[str] = ()) -> Iterator[list[str]]:
    """Print every call of ``getattr(owner, name)`` for each ``(owner, name)`` while the block runs.

    ``owner`` is a class (for methods and classmethods) or a module (for functions). Patch a
    function *where it is looked up*: SAT's ``from_pretrained_base`` calls ``get_model`` through
    the globals of ``sat.model.base_model``, so that module is the owner to patch, not the one
    that defines it. Nested calls are indented. The originals are restored in ``finally``.
    Yields the list of names called, in order.
    """
    depth = 0
    calls: list[str] = []
    saved: list[tuple[Any, str, Any]] = []

    def wrap(qualname: str, func: Callable[..., Any], skip_first: bool) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal depth
            shown = [describe(a) for a in args[1 if skip_first else 0:]]
            shown += [f"{k}={describe(kwargs[k])}" for k in show_kwargs if k in kwargs]
            w.print("  " + "│ " * depth + f"→ {qualname}({', '.join(shown)})   [{short_location(func)}]", "magenta")
            calls.append(qualname)
            depth += 1
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                depth -= 1
                w.print("  " + "│ " * depth + f"← {qualname}  {time.perf_counter() - start:.2f} s", "dim")
        return wrapper

    try:
        for owner, name in targets:
            raw = vars(owner)[name] if isinstance(owner, type) else getattr(owner, name)
            saved.append((owner, name, raw))
            label = f"{owner.__name__}.{name}" if isinstance(owner, type) else name
            if isinstance(raw, classmethod):  # keep it a classmethod; hide ``cls`` in the printout
                setattr(owner, name, classmethod(wrap(label, raw.__func__, skip_first=True)))
            else:
                setattr(owner, name, wrap(label, raw, skip_first=isinstance(owner, type)))
        yield calls
    finally:
        for owner, name, raw in reversed(saved):
            setattr(owner, name, raw)
