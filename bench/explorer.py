"""Section: the explorer page (``report.html``) — how big it is and how fast it opens.

``cogtrace report`` on the tiny default config writes ``report.html``; the page is then opened
from disk in headless Chromium (offline, over the DevTools pipe: :mod:`bench.browser`), a fresh
tab per run. 'load' is from the navigation command to the page's load event; 'interactive'
adds the explorer script's start-up (trees, diagrams fitted), read from when it marks the page
ready. The first open warms Chromium's caches and is not counted.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .results import Section, Table, Target, doc_paragraphs, seconds
from .stats import summarise
from .worker import REPO

__all__ = ["measure"]

SIZE_GOAL_BYTES = 1_000_000
OPEN_GOAL_SECONDS = 2.0


def measure(*, quick: bool, config: str, env: dict[str, str]) -> Section:
    from .browser import Browser, BrowserError, chromium

    section = Section("explorer", "The explorer page (report.html)", doc_paragraphs(__doc__, 1))
    started = time.perf_counter()
    repeats = 3 if quick else 10
    with tempfile.TemporaryDirectory(prefix="bench-explorer-") as tmp_name:
        out = Path(tmp_name) / "report"
        made = subprocess.run([sys.executable, "-m", "tracer.cli", "report", f"configs/{config}", "-o", str(out)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
        page_path = out / "report.html"
        if made.returncode != 0 or not page_path.is_file():
            reason = (made.stderr.strip().splitlines() or ["cogtrace report failed"])[-1]
            section.targets.append(Target("report.html size", "< 1 MB", reason, None))
            section.targets.append(Target("report.html opens", f"< {OPEN_GOAL_SECONDS:.0f} s", reason, None))
            return section
        size = page_path.stat().st_size
        loads: list[float] = []
        ready: list[float] = []
        error = None
        if chromium() is None:
            error = "chromium not installed"
        else:
            try:
                with Browser() as browser:
                    browser.open(page_path)  # warm-up
                    for _ in range(repeats):
                        page = browser.open(page_path)
                        # performance.now() at the ready mark, from the navigation start
                        script = page.evaluate("performance.getEntriesByName('cogtrace-ready')[0]?.startTime ?? null")
                        loads.append(page.load_seconds)
                        if script is not None:
                            ready.append(float(script) / 1000)
            except BrowserError as e:
                error = str(e)
    section.seconds = time.perf_counter() - started
    rows = [("report.html", f"{size / 1e6:.2f} MB ({size:,} bytes)", "", "")]
    if loads:
        load = summarise(loads)
        inter = summarise(ready) if ready else None
        rows.append((f"open in headless Chromium, {len(loads)} runs", "",
                     f"{seconds(load.median, 3)} (IQR {load.q1:.3f}–{load.q3:.3f})",
                     seconds(inter.median, 3) if inter else "—"))
    section.tables.append(Table(f"`cogtrace report configs/{config}`", ("what", "size", "load (median)",
                                                                       "interactive (median)"), tuple(rows)))
    section.targets.append(Target("report.html size", "< 1 MB", f"{size / 1e6:.2f} MB", size < SIZE_GOAL_BYTES))
    if loads:
        worst = max(summarise(loads).median, summarise(ready).median if ready else 0.0)
        section.targets.append(Target("report.html opens", f"< {OPEN_GOAL_SECONDS:.0f} s in headless Chromium",
                                      f"{worst:.3f} s (median of {len(loads)})", worst < OPEN_GOAL_SECONDS))
    else:
        section.targets.append(Target("report.html opens", f"< {OPEN_GOAL_SECONDS:.0f} s", error or "not run", None))
    return section
