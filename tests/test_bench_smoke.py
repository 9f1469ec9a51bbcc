"""Smoke tests of the benchmark harness (bench/): it imports, one tiny measurement path runs,
the worker protocol round-trips, the capture parsers read real-looking outputs and the
report renders. No timing is asserted: timings belong in docs/benchmarks.md, not in tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ is run from the checkout (python -m bench), not installed
    sys.path.insert(0, str(REPO))

from bench import capture, cost, report  # noqa: E402
from bench.machine import machine_info  # noqa: E402
from bench.results import Section, Table, Target  # noqa: E402
from bench.stats import fit_line, summarise  # noqa: E402
from bench.worker import run_task  # noqa: E402


def test_one_pipeline_run_untraced_and_construction_traced(tmp_path: Path) -> None:
    """The cost section's measurement path, in-process: load + a 2-token chat turn."""
    plain = cost._one_run("untraced", "tiny/cogvlm-grounding-generalist", 2, tmp_path / "u")
    traced = cost._one_run("construction", "tiny/cogvlm-grounding-generalist", 2, tmp_path / "c")
    assert plain["ids"] == traced["ids"] and len(plain["ids"]) >= 1
    assert plain["total"] > 0 and plain["cpu"] > 0
    assert traced["trace"]["by_category"].get("construction", 0) > 0
    assert set(traced["trace"]["by_category"]) == {"construction"}
    assert (tmp_path / "c" / "trace.json").is_file()


def test_worker_round_trip() -> None:
    ok = run_task("bench.stats:fit_line", {"xs": [1, 2, 3], "ys": [2, 4, 6]}, env={"PYTHONPATH": str(REPO)})
    assert ok.ok and ok.value[0] == pytest.approx(2.0) and ok.peak_rss_mb > 0
    bad = run_task("bench.stats:summarise", {"samples": []}, env={"PYTHONPATH": str(REPO)})
    assert not bad.ok and "expected at least one sample" in (bad.error or "")


def test_stats() -> None:
    s = summarise([3.0, 1.0, 2.0, 4.0])
    assert (s.median, s.low, s.high, s.n) == (2.5, 1.0, 4.0, 4)
    assert fit_line([0, 1, 2], [1, 3, 5])[:2] == pytest.approx((2.0, 1.0))


def test_capture_parsers() -> None:
    viz = {"traceEvents": [
        {"ph": "X", "name": "LlamaVisionExpertFCMixin.mlp_forward (/x/mixins.py:1)"},
        {"ph": "X", "name": "mlp_forward_default (/x/transformer_defaults.py:1)"},
        {"ph": "X", "name": "Module._call_impl (/x/module.py:1)"},
        {"ph": "X", "name": "BaseModel.add_mixin (/x/base_model.py:1)"},
        {"ph": "M", "name": "thread_name"},
    ]}
    c = capture.count_viztracer(viz, ["LlamaVisionExpertFCMixin"])
    assert (c.module_entries, c.hook_dispatches, c.hooks_with_mixin, c.construction_calls) == (1, 2, 1, 1)
    ours = {"events": [
        {"category": "module", "name": "transformer.layers.0.mlp", "data": {}},
        {"category": "hook", "name": "mlp_forward", "data": {"served_by": "mlp"}},
        {"category": "hook", "name": "attention_fn", "data": {"served_by": "default"}},
        {"category": "construction", "name": "get_model", "data": {}},
    ]}
    c = capture.count_ours(ours)
    assert (c.module_entries, c.module_paths, c.hook_dispatches, c.hooks_with_mixin, c.construction_calls) == \
        (1, 1, 2, 1, 1)
    table = ("CogVLMModel                [1, 8, 2048]   --\n"
             "├─BaseTransformer: 1-1     [1, 8, 2048]   209,216\n"
             "│    └─ImageMixin: 2-1      --             128\n"
             "Total params: 1,008,240\n")
    c = capture.count_torchinfo(table, ["ImageMixin"], 644_000)
    assert c.module_entries == 2 and any("model has 644,000" in n for n in c.notes)
    assert capture.module_paths("mixins.mlp.gate_proj.0:1 sat/model/transformer.py") == {"mixins.mlp.gate_proj.0"}


def test_report_renders() -> None:
    section = Section("cost", "Tracing cost", "intro", tables=[Table("t", ("a", "b"), (("1", "x|y"),), ("note",))],
                      targets=[Target("overhead", "< 5 %", "+1 %", True), Target("rss", "< 4 GB", "n/a", None)])
    text = report.markdown([section], machine_info(REPO), load_end=(0.0, 0.0, 0.0), total_seconds=1.0,
                           quick=True, command="make bench-quick")
    assert "## 1. Tracing cost" in text and "| 1 | x\\|y |" in text and "**not measured**" in text
