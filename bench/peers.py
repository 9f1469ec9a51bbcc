"""Section 3: torchinfo, torchview, torchlens, viztracer and cogvlm-tracer on the same model and input.

Each tool runs in its own fresh process (torchlens wraps torch's functions for good,
viztracer installs a profiler), on the same tiny CogVLM and the same input: the context
forward of the chat turn of section 1 (text processor + image processor output, 1256
tokens of which 1225 are image slots), under ``torch.no_grad()`` as ``chat()`` runs it.
In that process, after a warm-up, tool runs alternate with untraced runs. Tools that can wrap construction (viztracer, ours) also run on *load + forward*.
On the full-size model built on the meta device, the tools that accept a ``device``
argument (torchinfo, torchview) are tried as their documentation suggests.

Settings: each tool gets its most complete view — torchinfo ``depth=100``; torchview
``depth=100, expand_nested=True``; torchlens ``save=None`` (metadata only, as we record);
viztracer's defaults. Outputs are written to files and counted by :mod:`bench.capture`.
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .capture import Capture, count_ours, count_torchinfo, count_torchlens, count_torchview, count_viztracer
from .results import Section, Table, doc_paragraphs
from .worker import run_task

__all__ = ["PEER_RUNS", "measure", "peer_meta", "peer_tiny"]


@dataclass(frozen=True)
class PeerRun:
    peer: str
    scope: str  # "forward" or "load + forward"
    label: str


PEER_RUNS = (
    PeerRun("torchinfo", "forward", "torchinfo.summary"),
    PeerRun("torchinfo-kwargs", "forward", "torchinfo.summary (None input passed as a forward kwarg)"),
    PeerRun("torchview", "forward", "torchview.draw_graph"),
    PeerRun("torchlens", "forward", "torchlens.trace"),
    PeerRun("viztracer", "forward", "viztracer"),
    PeerRun("cogvlm-tracer", "forward", "cogvlm-tracer (tracer.trace)"),
    PeerRun("viztracer", "load + forward", "viztracer"),
    PeerRun("cogvlm-tracer", "load + forward", "cogvlm-tracer (tracer.trace)"),
)
META_RUNS = ("plain", "torchinfo", "torchinfo-static", "torchview")


def _mixin_classes() -> list[str]:
    """Names of every ``BaseMixin`` subclass loaded (SAT's and ours): how a hook's owner is recognised."""
    from sat.model.base_model import BaseMixin

    seen: set[str] = set()
    todo = [BaseMixin]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__name__ not in seen:
                seen.add(sub.__name__)
                todo.append(sub)
    return sorted(seen)


# ---------------------------------------------------------------------------------------------
# Running one tool: each returns the files it wrote


def _torchinfo(model: Any, inputs: dict[str, Any], out: Path, *, none_as_kwargs: bool = False,
               device: str | None = None) -> list[Path]:
    import torchinfo

    kwargs: dict[str, Any] = {}
    data = dict(inputs)
    if none_as_kwargs:  # torchinfo sums input sizes and fails on None values inside input_data
        kwargs = {k: v for k, v in data.items() if v is None}
        data = {k: v for k, v in data.items() if v is not None}
    stats = torchinfo.summary(model, input_data=data, depth=100, verbose=0, device=device, **kwargs)
    path = out / "summary.txt"
    path.write_text(str(stats), encoding="utf-8")
    return [path]


def _torchview(model: Any, inputs: dict[str, Any], out: Path, *, device: str | None = None) -> list[Path]:
    import torchview

    graph = torchview.draw_graph(model, input_data=inputs, depth=100, expand_nested=True,
                                 device=device or "cpu", save_graph=False)
    path = out / "graph.gv"
    path.write_text(graph.visual_graph.source, encoding="utf-8")
    return [path]


def _torchlens(model: Any, inputs: dict[str, Any], out: Path) -> list[Path]:
    import torchlens
    from torchlens.options import CaptureOptions

    # unwrap_when_done restores torch's functions, so the untraced runs between repeats are clean.
    log = torchlens.trace(model, input_kwargs=inputs, save=None, capture=CaptureOptions(unwrap_when_done=True))
    table, summary = out / "ops.csv", out / "summary.txt"
    log.to_pandas().to_csv(table)
    summary.write_text(str(log), encoding="utf-8")
    return [table, summary]


def _viztracer(work: Callable[[], Any], out: Path) -> list[Path]:
    from viztracer import VizTracer

    path = out / "result.json"
    tracer = VizTracer(output_file=str(path), verbose=0)
    tracer.start()
    try:
        work()
    finally:
        tracer.stop()
        tracer.save()
    return [path]


def _ours(work: Callable[[], Any], out: Path) -> list[Path]:
    from .tracing import tracing

    with tracing("runtime", out):
        work()
    return sorted(out.glob("*.json"))


def _count(peer: str, files: list[Path], mixins: list[str], parameters: int) -> Capture:
    if peer.startswith("cogvlm-tracer"):
        trace_json = next(p for p in files if p.name == "trace.json")
        return count_ours(json.loads(trace_json.read_text(encoding="utf-8")))
    text = files[0].read_text(encoding="utf-8")
    if peer.startswith("torchinfo"):
        return count_torchinfo(text, mixins, parameters)
    if peer == "torchview":
        return count_torchview(text, mixins)
    if peer == "torchlens":
        cap = count_torchlens(text)
        summary = files[1].read_text(encoding="utf-8")
        verified = next((line.strip() for line in summary.splitlines() if "Capture verified" in line), "")
        if verified:
            cap.notes.append(verified)
        return cap
    if peer == "viztracer":
        return count_viztracer(json.loads(text), mixins)
    raise ValueError(f"peer {peer!r}: no counter for its output")


# ---------------------------------------------------------------------------------------------
# Worker tasks


def peer_tiny(peer: str, scope: str, config: str, repeats: int, out_dir: str) -> dict[str, Any]:
    """Worker task: ``peer`` on ``scope``, interleaved with untraced runs; count the peer's output."""
    import torch

    from .workload import context_inputs, load_pipeline

    p = load_pipeline(config)
    inputs = context_inputs(p)
    parameters = sum(t.numel() for t in p.model.parameters())

    def forward() -> Any:
        with torch.no_grad():
            return p.model(**inputs)

    def load_and_forward() -> Any:
        q = load_pipeline(config)
        with torch.no_grad():
            return q.model(**context_inputs(q))

    work = forward if scope == "forward" else load_and_forward
    runners: dict[str, Callable[[Path], list[Path]]] = {
        "torchinfo": lambda out: _torchinfo(p.model, inputs, out),
        "torchinfo-kwargs": lambda out: _torchinfo(p.model, inputs, out, none_as_kwargs=True),
        "torchview": lambda out: _torchview(p.model, inputs, out),
        "torchlens": lambda out: _torchlens(p.model, inputs, out),
        "viztracer": lambda out: _viztracer(work, out),
        "cogvlm-tracer": lambda out: _ours(work, out),
    }

    def untraced() -> float:
        gc.collect()
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    # Interleaved: untraced, tool, untraced, tool, ..., untraced. Each tool run is compared
    # with the mean of the untraced runs just before and after it.
    work()  # warm-up
    base = [untraced()]
    times: list[float] = []
    files: list[Path] = []
    for i in range(repeats):
        out = Path(out_dir) / f"run{i}"
        out.mkdir(parents=True, exist_ok=True)
        gc.collect()
        start = time.perf_counter()
        with torch.no_grad():
            files = runners[peer](out)
        times.append(time.perf_counter() - start)
        base.append(untraced())
    ratios = [t / ((base[i] + base[i + 1]) / 2) for i, t in enumerate(times)]
    capture = _count(peer, files, _mixin_classes(), parameters)
    return {"baseline": statistics.median(base), "times": times, "median": statistics.median(times),
            "ratio": statistics.median(ratios),
            "bytes": sum(f.stat().st_size for f in files), "files": [f.name for f in files],
            "capture": capture.to_json()}


def peer_meta(peer: str, out_dir: str) -> dict[str, Any]:
    """Worker task: ``peer`` on the full-size model built on meta, with meta inputs."""
    import torch

    from tracer.cogvlm.build import build_model

    from .workload import DEFAULT_CONFIG, context_inputs, load_pipeline

    built = build_model("full/cogvlm-grounding-generalist", device="meta")
    # The tiny pipeline's processors make the same layout (1225 image slots, 490 px).
    inputs = {k: v.to("meta") if isinstance(v, torch.Tensor) else v
              for k, v in context_inputs(load_pipeline(DEFAULT_CONFIG)).items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.no_grad():
        if peer == "plain":
            built.model(**inputs)
            files: list[Path] = []
        elif peer == "torchinfo":
            files = _torchinfo(built.model, inputs, out, none_as_kwargs=True, device="meta")
        elif peer == "torchinfo-static":  # no input: the module tree only, no forward
            import torchinfo

            path = out / "summary.txt"
            path.write_text(str(torchinfo.summary(built.model, depth=100, verbose=0)), encoding="utf-8")
            files = [path]
        else:
            files = _torchview(built.model, inputs, out, device="meta")
    seconds = time.perf_counter() - start
    value: dict[str, Any] = {"seconds": seconds, "bytes": sum(f.stat().st_size for f in files)}
    if files:
        value["capture"] = _count(peer, files, _mixin_classes(), built.num_parameters).to_json()
    return value


# ---------------------------------------------------------------------------------------------
# The section


def _first_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else "failed"


def measure(*, quick: bool, config: str, env: dict[str, str]) -> Section:
    repeats = 1 if quick else 3
    section = Section("peers", "Peers on the same model and input",
                      doc_paragraphs(__doc__, 1) +
                      f" Times: {repeats} run(s) of each tool (torchlens at most 2) interleaved with untraced runs in the same process; "
                      "each tool run is divided by the mean of the untraced runs just before and after it, and "
                      "the median ratio is shown. " + doc_paragraphs(__doc__, 2))
    started = time.perf_counter()
    rows = []
    notes = []
    captured: dict[str, dict[str, Any]] = {}  # "tool (scope)" -> capture counts
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        for i, run in enumerate(PEER_RUNS):
            # torchlens takes 20-60 s a run here: two runs are enough for a ratio that large.
            n = min(repeats, 2) if run.peer == "torchlens" else repeats
            res = run_task("bench.peers:peer_tiny", {"peer": run.peer, "scope": run.scope, "config": config,
                                                     "repeats": n, "out_dir": f"{tmp}/{i}"},
                           env=env, timeout=900)
            if not res.ok:
                rows.append((run.label, run.scope, "failed", "—", "—", "—", "—", "—", "—", "—"))
                notes.append(f"{run.label} ({run.scope}): `{_first_line(res.error or '')}`")
                failed.append(f"{run.label} ({run.scope})")
                continue
            v = res.value
            cap = v["capture"]
            captured[f"{run.label} ({run.scope})"] = cap
            ratio = v["ratio"]
            rows.append((run.label, run.scope, "ok", f"{ratio:.1f}× ({v['median']:.2f} s)",
                         f"{v['bytes'] / 1e6:.2f} MB ({', '.join(v['files'])})",
                         f"{cap['module_entries']:,}", f"{cap['module_paths']:,}", f"{cap['hook_dispatches']:,}",
                         f"{cap['hooks_with_mixin']:,}", f"{cap['construction_calls']:,}"))
            notes.append(f"{run.label} ({run.scope}): " + "; ".join(cap["notes"]))
        meta_rows = []
        for name in META_RUNS:
            res = run_task("bench.peers:peer_meta", {"peer": name, "out_dir": f"{tmp}/meta-{name}"},
                           env=env, timeout=900)
            label = {"plain": "plain forward, no tool", "torchinfo": "torchinfo.summary(device='meta')",
                     "torchinfo-static": "torchinfo.summary, no input (module tree only)",
                     "torchview": "torchview.draw_graph(device='meta')"}[name]
            if not res.ok:
                meta_rows.append((label, "failed", f"`{_first_line(res.error or '')}`"))
                continue
            cap = res.value.get("capture")
            what = "ran" if cap is None else (f"{cap['module_entries']:,} module entries, "
                                              f"{cap['hook_dispatches']} hook dispatches; " + "; ".join(cap["notes"]))
            meta_rows.append((label, f"ok ({res.value['seconds']:.1f} s, {res.value['bytes'] / 1e6:.2f} MB)", what))
    section.seconds = time.perf_counter() - started
    section.tables.append(Table(
        "Tiny CogVLM, context forward of the chat turn (what each output contains)",
        ("tool", "scope", "status", "time × untraced", "output", "module entries", "module paths named",
         "SAT hook dispatches", "hook → mixin named", "construction calls"),
        tuple(rows), notes=tuple(notes)))
    section.tables.append(Table("Full-size CogVLM (17.6B) on the meta device", ("tool", "status", "what it captured"),
                                tuple(meta_rows)))
    section.text.append(_summary(captured, failed))
    return section


def _summary(captured: dict[str, dict[str, Any]], failed: list[str]) -> str:
    """One paragraph read off the counts: which outputs contain each kind of fact."""
    def having(key: str) -> str:
        tools = [name for name, cap in captured.items() if cap[key] > 0]
        return ", ".join(tools) if tools else "no tool"

    parts = [f"Read off the table: module paths are named by {having('module_paths')}; SAT hook dispatches "
             f"appear in the output of {having('hook_dispatches')}; the mixin that served a hook is named by "
             f"{having('hooks_with_mixin')}; SAT construction calls are recorded by {having('construction_calls')}."]
    if failed:
        parts.append(f"Failed on this input: {', '.join(failed)} (errors in the notes above).")
    return " ".join(parts)
