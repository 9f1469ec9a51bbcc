"""Section 4: how trace size and tracing time grow with generated tokens and with layers.

Two sweeps on the tiny model, each in one fresh process (:mod:`bench.worker`):

* **tokens** — the loaded tiny pipeline generates exactly N tokens (SAT's
  ``filling_sequence``, greedy, no end token: :func:`bench.workload.generate`), untraced,
  under runtime tracing as it comes (the default ``max_steps``: the context forward and the
  first steps in full, later steps as step summaries) and with every step recorded in full
  (``max_steps=None``), for N = 1 … 256;
* **layers** — the tiny model is built with N language layers (``build_model(num_layers=N)``,
  the article's own knob, at tiny width) and generates a fixed number of tokens.

Only the generation is inside the traced block (the model is built before), so the trace
holds module, hook and generation events. Untraced and traced runs alternate per point.

The goal for runtime tracing is at most 1.3× the untraced time at 16, 32, 128 and 256
generated tokens, writing ``trace.json`` included.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from tracer.schema import DEFAULT_MAX_STEPS

from .results import Section, Table, Target, doc_paragraphs
from .stats import fit_line
from .worker import run_task

__all__ = ["LAYER_TOKENS", "layers_sweep", "measure", "tokens_sweep"]

TOKENS_FULL = (1, 4, 16, 32, 64, 128, 256)
TOKENS_QUICK = (1, 4, 16)
LAYERS_FULL = (2, 4, 8, 16, 32)
LAYERS_QUICK = (2, 8)
LAYER_TOKENS = 4  # tokens generated at each point of the layer sweep
GOAL_TOKENS = (16, 32, 128, 256)
GOAL_RATIO = 1.3


def _point(p: Any, new_tokens: int, out_dir: Path, repeats: int, all_steps: bool = False) -> dict[str, Any]:
    from .tracing import ALL_STEPS, trace_stats, tracing
    from .workload import generate

    modes = ["untraced", "runtime"] + ([ALL_STEPS] if all_steps else [])
    times: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(repeats):
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:  # rotated: no mode always first
            gc.collect()
            # CPU time of this process (one torch thread, see bench/__main__.py), not wall time:
            # on a shared 2-core machine the other jobs stretch wall time by up to 3x, run to run.
            start = time.process_time()
            with tracing(mode, None if mode == "untraced" else out_dir / mode):
                generate(p, new_tokens)
            times[mode].append(time.process_time() - start)
    stats = trace_stats(out_dir / "runtime")
    # The fastest of the runs: what other jobs add (cache misses, migrations) only ever adds time.
    point = {"untraced": min(times["untraced"]), "traced": min(times["runtime"]),
             "bytes": stats["bytes"], "trace_json_bytes": stats.get("trace_json_bytes", 0),
             "events": stats["events"], "by_category": stats["by_category"]}
    if all_steps:
        full = trace_stats(out_dir / ALL_STEPS)
        point.update(all_steps=min(times[ALL_STEPS]), all_steps_bytes=full["bytes"], all_steps_events=full["events"])
    return point


def tokens_sweep(config: str, tokens: list[int], repeats: int, out_dir: str) -> list[dict[str, Any]]:
    """Worker task: one loaded pipeline, N generated tokens per point."""
    from .workload import generate, load_pipeline

    p = load_pipeline(config)
    generate(p, 1)  # warm-up
    return [{"x": n, **_point(p, n, Path(out_dir) / f"tokens{n}", repeats, all_steps=True)} for n in tokens]


def layers_sweep(config: str, layers: list[int], repeats: int, out_dir: str) -> list[dict[str, Any]]:
    """Worker task: a model with N language layers per point, ``LAYER_TOKENS`` tokens each."""
    from .workload import generate, load_pipeline

    points = []
    for n in layers:
        p = load_pipeline(config, num_layers=n)
        generate(p, 1)  # warm-up
        points.append({"x": n, **_point(p, LAYER_TOKENS, Path(out_dir) / f"layers{n}", repeats)})
        del p
    return points


def _rows(points: list[dict[str, Any]]) -> tuple[tuple[str, ...], ...]:
    return tuple((str(pt["x"]), f"{pt['untraced']:.3f} s", f"{pt['traced']:.3f} s",
                  f"{pt['traced'] / pt['untraced']:.2f}×", f"{pt['bytes'] / 1e6:.2f} MB", f"{pt['events']:,}",
                  ", ".join(f"{k} {v:,}" for k, v in sorted(pt["by_category"].items())))
                 for pt in points)


def _all_steps_rows(points: list[dict[str, Any]]) -> tuple[tuple[str, ...], ...]:
    return tuple((str(pt["x"]), f"{pt['untraced']:.3f} s", f"{pt['traced']:.3f} s",
                  f"{pt['traced'] / pt['untraced']:.2f}×", f"{pt['all_steps']:.3f} s",
                  f"{pt['all_steps'] / pt['untraced']:.2f}×", f"{pt['events']:,} / {pt['all_steps_events']:,}",
                  f"{pt['bytes'] / 1e6:.2f} / {pt['all_steps_bytes'] / 1e6:.2f} MB")
                 for pt in points if "all_steps" in pt)


def _targets(points: list[dict[str, Any]]) -> list[Target]:
    by_x = {pt["x"]: pt for pt in points}
    targets = []
    for n in GOAL_TOKENS:
        pt = by_x.get(n)
        name = f"runtime tracing, {n} generated tokens (CPU time)"
        goal = f"≤ {GOAL_RATIO}× untraced"
        if pt is None:
            targets.append(Target(name, goal, "not in this run's sweep", None))
            continue
        ratio = pt["traced"] / pt["untraced"]
        targets.append(Target(name, goal, f"{ratio:.2f}× (every step in full: {pt['all_steps'] / pt['untraced']:.2f}×)"
                              if "all_steps" in pt else f"{ratio:.2f}×", ratio <= GOAL_RATIO))
    return targets


def _growth(points: list[dict[str, Any]], unit: str) -> str:
    if len(points) < 2:
        return ""
    xs = [float(pt["x"]) for pt in points]
    size, _, r2_size = fit_line(xs, [pt["bytes"] / 1e3 for pt in points])
    events, _, _ = fit_line(xs, [float(pt["events"]) for pt in points])
    extra, _, r2_time = fit_line(xs, [pt["traced"] - pt["untraced"] for pt in points])
    return (f"Per extra {unit}: +{size:,.1f} kB of trace files (linear fit, R² {r2_size:.3f}), "
            f"+{events:,.0f} events, +{extra * 1000:,.1f} ms of tracing time (R² {r2_time:.2f}).")


def measure(*, quick: bool, config: str, env: dict[str, str], plot_path: Path | None) -> Section:
    tokens = TOKENS_QUICK if quick else TOKENS_FULL
    layers = LAYERS_QUICK if quick else LAYERS_FULL
    repeats = 1 if quick else 3
    section = Section("scaling", "Scaling with generated tokens and with layers",
                      doc_paragraphs(__doc__, 1, 2, 3, 4) + f" Times are CPU time of the measuring process (`time.process_time`, one torch thread), the fastest of {repeats} run(s) per point, untraced and traced alike: wall time on the shared 2-core machine swung by up to 3x run to run. The trace is the last traced run's.")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        tok = run_task("bench.scaling:tokens_sweep", {"config": config, "tokens": list(tokens), "repeats": repeats,
                                                      "out_dir": f"{tmp}/tokens"}, env=env, timeout=1200)
        lay = run_task("bench.scaling:layers_sweep", {"config": config, "layers": list(layers), "repeats": repeats,
                                                      "out_dir": f"{tmp}/layers"}, env=env, timeout=1200)
    section.seconds = time.perf_counter() - started
    headers = ("untraced", "traced", "× untraced", "trace files", "events", "events by category")
    for res, title, key, unit in ((tok, "Generated tokens (tiny model)", "tokens", "token"),
                                  (lay, f"Language layers (tiny width, {LAYER_TOKENS} tokens generated)",
                                   "layers", "layer")):
        if not res.ok:
            section.text.append(f"**{title}: not measured.** `{(res.error or '').strip().splitlines()[-1]}`")
            continue
        section.tables.append(Table(title, (key, *headers), _rows(res.value), notes=(_growth(res.value, unit),)))
        if key == "tokens":
            section.tables.append(Table(
                "Generated tokens: the default against every step recorded in full",
                ("tokens", "untraced", "traced (default)", "× untraced", "every step in full", "× untraced",
                 "events default / full", "trace files default / full"), _all_steps_rows(res.value),
                notes=(f"Default = `tracer.trace()`: the context forward and the first {DEFAULT_MAX_STEPS} steps "
                       "recorded in full, later steps as step summaries (the `generation` event alone). Every step "
                       "in full = `tracer.trace(max_steps=None)` (`--max-steps all`). Same runs' fastest of "
                       f"{repeats}, rotated order.",)))
            section.targets += _targets(res.value)
    if plot_path is not None and tok.ok and lay.ok:
        from .plot import scaling_plot

        scaling_plot(tok.value, lay.value, plot_path, layer_tokens=LAYER_TOKENS)
        section.text.append(f"![Trace size and time against tokens and layers]({plot_path.name})")
    return section
