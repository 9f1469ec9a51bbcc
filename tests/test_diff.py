"""``cogtrace diff`` and :mod:`tracer.diff`: alignment, volatile fields, formats, exit codes.

The two stored traces (``fixtures/diff_chat.json``, ``fixtures/diff_grounding.json``) are real
``cogtrace report`` runs of the tiny chat-v1.1 and grounding-generalist configs, recorded from
the same checkout by ``fixtures/make_report_trace.py --diff``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.render_support import check_golden

from tracer.cli import main
from tracer.diff import SECTIONS, diff_traces, normalise
from tracer.render.diffview import render_diff_text
from tracer.schema import Event, SourceLocation, Trace

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHAT, GROUNDING = FIXTURES / "diff_chat.json", FIXTURES / "diff_grounding.json"


def load(path: Path) -> Trace:
    with path.open(encoding="utf-8") as f:
        return Trace.load(f)


def call(id: int, parent: int | None, name: str, **data: object) -> Event:
    function = name.rpartition(".")[2]
    return Event(id=id, parent=parent, category="construction", name=name, start_ns=id * 10, duration_ns=5,
                 data={"function": function, **data})


def test_a_trace_against_itself_has_no_difference(capsys: pytest.CaptureFixture[str]) -> None:
    trace = load(GROUNDING)
    diff = diff_traces(trace, trace)
    assert diff.same and diff.counts() == dict.fromkeys(SECTIONS, 0)
    assert all(not pair.changed and pair.a is not None and pair.b is not None for pair in diff.calls)
    assert len(diff.calls) == sum(1 for _ in trace.of("construction"))
    assert main(["diff", str(GROUNDING), str(GROUNDING)]) == 0
    assert "no differences" in capsys.readouterr().out


def test_chat_against_grounding_golden(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    """Exactly what the two configs and their prompt templates change; exit status 1 like diff(1)."""
    assert main(["diff", str(CHAT), str(GROUNDING), "--width", "120"]) == 1
    text = capsys.readouterr().out.replace(str(FIXTURES), "fixtures")
    check_golden(request, "diff.chat-grounding.txt", text)
    diff = diff_traces(load(CHAT), load(GROUNDING))
    counts = diff.counts()
    # Same architecture: no module, hook-table or mixin differs; the configs and the templates do.
    assert counts["modules"] == counts["hooks"] == 0
    meta = {d.field: (d.a, d.b) for d in diff.of("meta")}
    assert meta["prompt_version"] == ("chat_old", "base")
    assert set(meta) == {"command", "config", "prompt_version", "response"}
    fields = {d.field for d in diff.of("construction")}
    # The checkpoint folder (named after the config), and the one config key that differs.
    assert fields == {"args.name", "changed._shrunk", "namespaces.args._shrunk", "args.load_path"}
    assert all(d.kind == "changed" for d in diff.differences)  # nothing exists on one side only
    tokens = {d.field: (d.a, d.b) for d in diff.of("tokens")}
    assert "▁Question" in tokens["pieces"][0] and "▁Question" not in tokens["pieces"][1]


def test_json_format_lists_every_difference(tmp_path: Path) -> None:
    out = tmp_path / "diff.json"
    assert main(["diff", str(CHAT), str(GROUNDING), "--format", "json", "-o", str(out)]) == 1
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["format"] == "cogvlm-tracer-diff" and doc["same"] is False
    assert sum(doc["counts"].values()) == len(doc["differences"]) > 0
    assert {d["section"] for d in doc["differences"]} <= set(SECTIONS)
    assert doc["tokens"]["a"]["positions"] == doc["steps"][0]["a"]["tokens_fed"]
    assert [s["step"] for s in doc["steps"]] == [0, 1]


def test_html_format_is_one_self_contained_page(tmp_path: Path) -> None:
    out = tmp_path / "diff.html"
    assert main(["diff", str(CHAT), str(GROUNDING), "--format", "html", "-o", str(out)]) == 1
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script src" not in page and "<link" not in page
    assert 'id="cogtrace-data"' in page and 'class="changed"' in page and 'class="same collapsed"' in page
    assert "chat_old" in page and "▁Question" in page  # the template difference and its tokens


def test_volatile_fields_never_count() -> None:
    """Times, event ids, addresses and absolute paths differ; the diff is still empty."""
    trace = load(GROUNDING)

    def moved(address: str, root: str, shift: int) -> Trace:
        events = []
        for e in trace.events:
            data = dict(e.data)
            if isinstance(data.get("result"), str):
                data["result"] = f"{data['result']} at {address}"
            source = e.source
            if source is not None and not source.file.startswith("/"):
                prefix = f"{root}/venv/lib/python3.11/site-packages/" if source.file.startswith("sat/") else f"{root}/"
                source = SourceLocation(prefix + source.file, source.line, source.function)
            events.append(dataclasses.replace(
                e, id=e.id + shift, parent=None if e.parent is None else e.parent + shift,
                start_ns=e.start_ns * (shift + 1), duration_ns=e.duration_ns + shift, data=data, source=source))
        return dataclasses.replace(trace, events=tuple(events))

    trace, other = moved("0x7f00aaaaaaaa", "/opt/one", 0), moved("0x7f00deadbeef", "/home/x/two", 1000)
    assert diff_traces(trace, other).same
    raised = dataclasses.replace(other, exception='Traceback (most recent call last):\n  File "/x/a.py", line 3\n'
                                                  "RuntimeError: out of memory")
    assert [(d.field, d.b) for d in diff_traces(trace, raised).differences] == [
        ("exception", "RuntimeError: out of memory")]
    assert normalise("'/home/me/.cache/ckpt/model_config.json'") == "'model_config.json'"
    assert normalise("/srv/venv/lib/python3.11/site-packages/sat/model/base_model.py:114") == \
        "sat/model/base_model.py:114"
    assert normalise("<Foo object at 0x7f1234567890>") == "<Foo object at 0x…>"


def test_a_wrapper_call_aligns_its_children() -> None:
    """LLaMA vs CogVLM: CogVLMModel.__init__ wraps LLaMAModel.__init__; the LLaMA calls inside
    align with LLaMA's own, CogVLM's additions show as only in B, the swapped mlp mixin as a change."""
    hooks = {"mlp_forward": "mlp"}
    llama = Trace(events=(
        call(0, None, "get_model"),
        call(1, 0, "LLaMAModel.__init__", params=100),
        call(2, 1, "BaseModel.add_mixin", mixin="mlp", mixin_class="LLaMAMlpMixin", params_before=10,
             params_after=30, hooks_before={}, hooks_after=hooks),
    ))
    cogvlm = Trace(events=(
        call(0, None, "get_model"),
        call(1, 0, "CogVLMModel.__init__", params=200),
        call(2, 1, "LLaMAModel.__init__", params=100),
        call(3, 2, "BaseModel.add_mixin", mixin="mlp", mixin_class="LLaMAMlpMixin", params_before=10,
             params_after=30, hooks_before={}, hooks_after=hooks),
        call(4, 1, "BaseModel.del_mixin", mixin="mlp", mixin_class="LLaMAMlpMixin", params_before=40,
             params_after=20, hooks_before=hooks, hooks_after={}),
        call(5, 1, "BaseModel.add_mixin", mixin="mlp", mixin_class="LlamaVisionExpertFCMixin", params_before=20,
             params_after=80, hooks_before={}, hooks_after=hooks),
    ))
    diff = diff_traces(llama, cogvlm, a_name="llama", b_name="cogvlm")
    rows = [(p.depth, p.a_label or "—", p.b_label or "—", p.a is not None and p.b is not None) for p in diff.calls]
    assert rows == [
        (0, "get_model", "get_model", True),
        (1, "—", "CogVLMModel.__init__", False),
        (2, "LLaMAModel.__init__", "LLaMAModel.__init__", True),
        (3, "BaseModel.add_mixin('mlp', LLaMAMlpMixin)", "BaseModel.add_mixin('mlp', LLaMAMlpMixin)", True),
        (2, "—", "BaseModel.del_mixin('mlp')", False),
        (2, "—", "BaseModel.add_mixin('mlp', LlamaVisionExpertFCMixin)", False),
    ]
    only_b = [d.key for d in diff.of("construction") if d.kind == "only_b"]
    assert only_b == ["get_model / CogVLMModel.__init__", "get_model / CogVLMModel.__init__ / BaseModel.del_mixin('mlp')",
                      "get_model / CogVLMModel.__init__ / BaseModel.add_mixin('mlp')"]
    assert not [d for d in diff.of("construction") if d.kind == "changed"]  # the LLaMA part is identical


def test_changed_mixin_reports_class_delta_and_hook_change() -> None:
    a = Trace(events=(call(0, None, "BaseModel.add_mixin", mixin="mlp", mixin_class="LLaMAMlpMixin",
                           params_before=10, params_after=30, hooks_before={}, hooks_after={"mlp_forward": "mlp"}),))
    b = Trace(events=(call(0, None, "BaseModel.add_mixin", mixin="mlp", mixin_class="LlamaVisionExpertFCMixin",
                           params_before=10, params_after=90, hooks_before={}, hooks_after={}),))
    found = {d.field: (d.a, d.b) for d in diff_traces(a, b).of("construction")}
    assert found == {"mixin_class": ("LLaMAMlpMixin", "LlamaVisionExpertFCMixin"), "param_delta": (20, 80),
                     "hook_changes": (["mlp_forward: default → mlp"], [])}


def test_text_output_folds_and_limits() -> None:
    diff = diff_traces(load(CHAT), load(GROUNDING))
    full = render_diff_text(diff, width=120, limit=0)
    short = render_diff_text(diff, width=120, limit=2)
    assert "more rows in this section" in short and "more rows in this section" not in full
    assert "(+" in full  # one change in many places is one row naming the first few


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    assert main(["diff", str(GROUNDING), str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err and "expected" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}', encoding="utf-8")
    assert main(["diff", str(bad), str(GROUNDING)]) == 2
    assert "not a cogvlm-tracer trace" in capsys.readouterr().err
    out = tmp_path / "out.txt"
    assert main(["diff", str(GROUNDING), str(missing), "-o", str(out)]) == 2
    assert not out.exists()  # nothing half-written


def test_diff_modules_import_no_torch() -> None:
    code = f"""
import json, sys
from tracer.schema import Trace
from tracer.diff import diff_traces
from tracer.render.diffview import render_diff_text
from tracer.render.explorer import render_diff_html
a = Trace.load(open({str(CHAT)!r}, encoding="utf-8")); b = Trace.load(open({str(GROUNDING)!r}, encoding="utf-8"))
render_diff_text(diff_traces(a, b))
render_diff_html(diff_traces(a, b), a, b)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "sat", "deepspeed"))))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_two_recordings_of_one_config_do_not_differ(capsys: pytest.CaptureFixture[str]) -> None:
    """A config on each side is traced (as ``cogtrace build`` does) twice: new addresses, new
    times, same construction — no difference, exit 0."""
    config = "configs/tiny/cogvlm-chat-v1.1"
    assert main(["diff", config, config, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["same"] and doc["calls"] and all(c["a"] is not None and c["b"] is not None for c in doc["calls"])


def test_scripts_are_traced_and_a_failing_script_is_one_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    repo = Path(__file__).resolve().parent.parent
    script = tmp_path / "build_tiny.py"
    script.write_text("from tracer.cogvlm.build import build_model\n"
                      f"build_model({str(repo / 'configs/tiny/cogvlm-chat-v1.1')!r})\n", encoding="utf-8")
    assert main(["diff", str(script), str(script)]) == 0
    assert "no differences" in capsys.readouterr().out
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no model here')\n", encoding="utf-8")
    assert main(["diff", str(broken), str(script)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "broken.py" in err and "RuntimeError: no model here" in err
