"""The CLI ways in: `cogtrace build -o`, `cogtrace run -o script.py`, `cogtrace shapes`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tracer.cli import main
from tracer.schema import Trace

CONFIG = "configs/tiny/cogvlm-grounding-generalist"


def _load(folder: Path) -> Trace:
    with (folder / "trace.json").open() as f:
        return Trace.load(f)


def test_build_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", CONFIG, "-o", str(tmp_path)]) == 0
    trace = _load(tmp_path)
    assert json.loads((tmp_path / "trace.chrome.json").read_text())["traceEvents"]
    mixins = [(e.data["function"], e.data["mixin"]) for e in trace.events
              if e.data.get("function") in ("add_mixin", "del_mixin") and e.data["owner"] == "CogVLMModel"]
    assert mixins[-5:] == [("add_mixin", "eva"), ("del_mixin", "mlp"), ("add_mixin", "mlp"),
                           ("del_mixin", "rotary"), ("add_mixin", "rotary")]
    assert trace.meta["command"] == "build" and "trace written" in capsys.readouterr().err


def test_build_without_output_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["build", str(Path(__file__).parent.parent / CONFIG), "--device", "meta"]) == 0
    assert list(tmp_path.iterdir()) == []


def test_run_script_writes_trace_and_passes_argv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from tracer.cogvlm.build import build_model
        assert __name__ == "__main__"
        print("argv:", sys.argv[1:])
        build_model({str(Path(CONFIG).resolve())!r})
        if "--fail" in sys.argv:
            raise RuntimeError("script failed on purpose")
        if "--exit" in sys.argv:
            sys.exit(3)
    """))
    out = tmp_path / "out"
    assert main(["run", "-o", str(out), str(script), "a", "--b"]) == 0
    assert "argv: ['a', '--b']" in capsys.readouterr().out
    trace = _load(out)
    assert trace.exception is None and any(e.name == "get_model" for e in trace.events)

    assert main(["run", "-o", str(out), str(script), "--fail"]) == 1
    err = capsys.readouterr().err
    # SAT's log lines may come first (its handler writes to the stderr of the moment it was imported).
    tb = err[err.find("Traceback (most recent call last):"):]
    assert tb.startswith("Traceback (most recent call last):\n  File \"" + str(script))  # no cogtrace frames
    assert "RuntimeError: script failed on purpose" in err
    trace = _load(out)
    assert trace.exception is not None and "script failed on purpose" in trace.exception
    assert any(e.name == "get_model" for e in trace.events)

    assert main(["run", "-o", str(out), str(script), "--exit"]) == 3


def test_run_cpu_shims_let_upstream_style_code_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Upstream's vision tower imports xformers and its LM uses SAT's Triton rotary: --cpu covers both."""
    import importlib.util

    if importlib.util.find_spec("xformers") is not None:
        pytest.skip("a real xformers is installed")
    script = tmp_path / "upstream_style.py"
    script.write_text(textwrap.dedent("""
        import torch
        import xformers.ops as xops
        from sat.model.position_embedding.triton_rotary_embeddings import FastRotaryEmbedding
        q = torch.randn(1, 5, 2, 8)
        print("attention", tuple(xops.memory_efficient_attention(q, q, q, p=0.0).shape))
        rotary = FastRotaryEmbedding(8)
        x = torch.randn(1, 2, 5, 8)
        out, _ = rotary(x.clone(), x.clone(), torch.arange(5)[None], max_seqlen=5)
        print("rotary", tuple(out.shape))
    """))
    out = tmp_path / "out"
    assert main(["run", "-o", str(out), str(script)]) == 1  # plain: no xformers on this machine
    assert "No module named 'xformers'" in capsys.readouterr().err
    assert main(["run", "--cpu", "-o", str(out), str(script)]) == 0
    printed = capsys.readouterr().out
    assert "attention (1, 5, 2, 8)" in printed and "rotary (1, 2, 5, 8)" in printed
    assert _load(out).meta["cpu_shims"] is True


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "missing.py")]) == 2
    assert main(["build", CONFIG, "-o", str(tmp_path), "--categories", "modules"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "missing.py: no such script" in err[0] and "--categories 'modules'" in err[1]


def test_shapes_on_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", CONFIG, "-o", str(tmp_path), "--text-tokens", "3", "--categories", "module,hook"]) == 0
    out = capsys.readouterr().out
    assert "logits: [1, 1231, 2048]" in out and "mlp_forward" in out
    trace = _load(tmp_path)
    assert {e.category for e in trace.events} == {"module", "hook"}
    assert trace.meta["command"] == "shapes"


def test_seed_zero_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SAT asserts seed > 0 deep in BaseModel.__init__; we say so before building."""
    assert main(["build", CONFIG, "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed 0: expected a positive integer" in err[0]
