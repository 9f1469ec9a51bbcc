"""Section 5: profile what missed its target (pyinstrument), and say where the time goes.

For each missed time target the harness profiles the same workload in a fresh process with
pyinstrument (a statistical profiler: low overhead, whole call stacks) and reports

* the self time of every function of our recording code (``tracer/`` outside the CogVLM
  model in ``tracer/cogvlm/``), the part tracing adds and we can fix, and
* where the rest goes (torch, SAT, the standard library), aggregated by package,

plus pyinstrument's own call tree, written next to the report for the reader to open.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

__all__ = ["WORKLOADS", "profile_workload"]

# workload name -> what it runs (see _run)
WORKLOADS = {
    "construction": "tiny pipeline (load + chat turn) under construction tracing",
    "runtime": "tiny pipeline (load + chat turn) under full runtime tracing",
    "meta-build": "full-size meta build (build_model device='meta')",
}


def _run(workload: str, config: str, out_dir: Path) -> None:
    if workload == "meta-build":
        from tracer.cogvlm.build import build_model

        build_model("full/cogvlm-grounding-generalist", device="meta")
        return
    from .tracing import tracing
    from .workload import chat_turn, load_pipeline

    with tracing(workload, out_dir):
        chat_turn(load_pipeline(config), 16)


def _package(path: str) -> str:
    """'…/site-packages/torch/nn/modules/module.py' -> 'torch'; our recording code and our
    CogVLM model code are told apart (only the first is tracing overhead)."""
    if not path:
        return "built-in / C"
    parts = Path(path).parts
    if "site-packages" in parts:
        i = parts.index("site-packages")
        return parts[i + 1] if i + 1 < len(parts) else "site-packages"
    if "tracer" in parts:
        return "tracer (CogVLM model code)" if "cogvlm" in parts else "tracer (recording)"
    if "bench" in parts:
        return "bench"
    if path.startswith("<"):
        return path  # <cogtrace trampoline>, <string>, <built-in>
    if "json" in parts:
        return "python stdlib: json (trace files)"
    return "python stdlib" if "lib" in parts else path


def profile_workload(workload: str, config: str, out_dir: str, text_path: str) -> dict[str, Any]:
    """Worker task: warm up, then profile one run of ``workload``; returns the hot spots."""
    from pyinstrument import Profiler

    root = Path(out_dir)
    _run(workload, config, root / "warmup")
    profiler = Profiler(interval=0.001)
    start = time.perf_counter()
    profiler.start()
    _run(workload, config, root / "profiled")
    profiler.stop()
    seconds = time.perf_counter() - start

    session = profiler.last_session
    frame = session.root_frame() if session is not None else None
    ours: dict[str, float] = {}
    packages: dict[str, float] = {}
    # pyinstrument keeps a frame's own time in synthetic "[self]" leaves under it: charge each
    # leaf's time to the nearest real frame above it.
    stack = [(frame, frame)] if frame is not None else []
    while stack:
        f, owner = stack.pop()
        if not f.is_synthetic:
            owner = f
        stack.extend((c, owner) for c in f.children)
        self_time = f.time - sum(c.time for c in f.children)
        if self_time <= 0:
            continue
        path = owner.file_path or ""
        package = _package(path)
        packages[package] = packages.get(package, 0.0) + self_time
        if package == "tracer (recording)":
            key = f"{owner.function} ({owner.file_path_short}:{owner.line_no})"
            ours[key] = ours.get(key, 0.0) + self_time
    total = sum(packages.values()) or 1.0

    Path(text_path).write_text(profiler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8")

    def top(table: dict[str, float], n: int) -> list[tuple[str, float, float]]:
        return [(name, t, t / total) for name, t in sorted(table.items(), key=lambda kv: -kv[1])[:n]]

    value: dict[str, Any] = {"seconds": seconds, "sampled": total, "ours": top(ours, 12),
                             "packages": top(packages, 8)}
    if workload != "meta-build":
        value["encoding"] = encoding_costs(root / "profiled")
    return value


def encoding_costs(trace_dir: Path, repeats: int = 5) -> dict[str, float]:
    """Seconds to encode this run's trace with the tracer's own writers (``tracer.export``:
    ``write_json``, one line per event, and ``write_chrome``) and, for scale, with one compact
    ``json.dumps`` of each file's data (the C encoder's floor), best of ``repeats``."""
    import io
    import json

    from tracer.export import write_chrome, write_json
    from tracer.schema import Trace

    def best(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    costs = {"as written": 0.0, "json.dumps": 0.0}
    path = trace_dir / "trace.json"
    if not path.is_file():
        return costs
    trace = Trace.from_json(json.loads(path.read_text(encoding="utf-8")))
    for writer in (write_json, write_chrome):
        costs["as written"] += best(lambda w=writer: w(trace, io.StringIO()))
    for name in ("trace.json", "trace.chrome.json"):
        data = json.loads((trace_dir / name).read_text(encoding="utf-8"))
        costs["json.dumps"] += best(lambda d=data: json.dumps(d, separators=(",", ":")))
    return costs
