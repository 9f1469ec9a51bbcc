"""Section "parallel": what per-rank tracing costs at model_parallel_size 2, in one run.

Each measurement is one ``torchrun`` job of 2 ranks (``tracer.parallel.worker logits``: split
the tiny checkpoint at load, one context forward). Untraced and traced jobs alternate, so load
on the shared machine hits both alike. Each rank times its own work (load, forward and, when
traced, writing its trace with every collective); process start-up and imports are excluded.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .results import Section, Table

WORLD = 2


@contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _job(config: str, traced: bool, tmp: Path, index: int) -> list[float]:
    from tracer.parallel.launch import launch

    out = tmp / f"{'traced' if traced else 'plain'}-{index}"
    job = ["logits", config, "--save", str(out)]
    if traced:
        job += ["--trace", str(out / "trace")]
    launch(job, WORLD, timeout=900, log=out / "torchrun.log")
    return [json.loads((out / f"timing_rank{r}.json").read_text())["seconds"] for r in range(WORLD)]


def measure(*, quick: bool, config: str, env: Mapping[str, str]) -> Section:
    started = time.perf_counter()
    repeats = 1 if quick else 3
    plain: list[list[float]] = []
    traced: list[list[float]] = []
    with _environ(env), tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp_name:
        tmp = Path(tmp_name)
        _job(config, False, tmp, -1)  # warm-up: generates the tiny checkpoint, fills the page cache
        for i in range(repeats):
            plain.append(_job(config, False, tmp, i))
            traced.append(_job(config, True, tmp, i))
        events = sum(len(json.loads((tmp / f"traced-0/trace/rank{r}/trace.json").read_text())["events"])
                     for r in range(WORLD))
    rows = []
    for rank in range(WORLD):
        base = statistics.median(run[rank] for run in plain)
        cost = statistics.median(run[rank] for run in traced)
        rows.append((f"rank {rank}", f"{base:.2f} s", f"{cost:.2f} s", f"{cost / base:.2f}x"))
    section = Section("parallel", "Model parallel: per-rank tracing overhead at mp=2",
                      f"`{config}` split across {WORLD} ranks under torchrun (gloo, one torch thread per rank); "
                      f"median of {repeats} alternating untraced/traced jobs. Per rank: split-at-load, one context "
                      f"forward and, traced, writing the rank's trace.")
    section.tables.append(Table("Per-rank time, untraced vs traced", ("rank", "untraced", "traced", "ratio"),
                                tuple(rows), notes=(f"{events} events in the two traced ranks' traces together.",)))
    section.seconds = time.perf_counter() - started
    return section
