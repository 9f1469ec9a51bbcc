"""Any SAT model, drawn truthfully: SAT's official models under ``cogtrace run`` (no ``--cpu``).

Each model is built tiny and run once by a plain script; the generic architecture view must
name only modules and hooks that exist in its trace, and nothing of CogVLM may appear.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tracer.cli import main
from tracer.render.registry import views_for
from tracer.render.report import render_html
from tracer.schema import Trace

SCRIPT = Path(__file__).parent / "fixtures" / "sat_official.py"
MODELS = {"bert": "BertModel", "vit": "ViTModel", "glm": "GLMModel", "chatglm2": "ChatGLM2Model",
          "llama": "LLaMAModel", "eva2clip": "EVA2CLIPModel", "gpt2": "GPT2Model", "mixtral": "MixtralModel"}
COGVLM_WORDS = re.compile(r"vision[ -](expert|tower|tokens)|GLU adapter|\bboi\b|\beoi\b|CogVLM|EVA2-CLIP layers|token layout",
                          re.IGNORECASE)
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _names_in(dot: str) -> tuple[set[str], set[str]]:
    """Module paths used as node names, and hook names the labels mention."""
    nodes = {m.group(1) for m in re.finditer(r'^\s*"([^"]+)" \[', dot, re.MULTILINE)}
    hooks: set[str] = set()
    for label in re.findall(r'label="((?:[^"\\]|\\.)*)"', dot):
        for line in label.split("\\n"):
            m = re.match(r"(?:hook |serves )?(\w+_(?:forward|fn))\b", line)
            if m:
                hooks.add(m.group(1))
    return nodes, hooks


@pytest.mark.parametrize("name", sorted(MODELS))
def test_official_model_runs_on_cpu_and_is_drawn_truthfully(name: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["run", "-o", str(out), str(SCRIPT), name]) == 0, capsys.readouterr().err
    assert f"{name} {MODELS[name]}" in capsys.readouterr().out
    with (out / "trace.json").open(encoding="utf-8") as f:
        trace = Trace.load(f)
    assert trace.meta["model_class"] == MODELS[name]
    if not torch.cuda.is_available():
        assert trace.meta["cpu_substitutions"], "no CUDA: the rotary substitution is applied and named"

    views = views_for(trace)
    assert "tokens" not in views  # a model without an adapter gets the generic views only
    arch = views["architecture"].dot
    assert arch is not None
    dot = arch(trace)
    modules = {m.path for m in trace.modules}
    dispatched = {e.name for e in trace.of("hook")}
    nodes, hooks = _names_in(dot)
    structural = {"input", "output"} | {n for n in nodes if n.endswith(".hooks")}
    assert nodes - structural <= modules, f"nodes that are not modules of {name}: {nodes - structural - modules}"
    assert hooks <= set(trace.hooks) | dispatched, f"hooks not in the trace: {hooks - set(trace.hooks) - dispatched}"
    assert any(n.startswith("transformer.layers.0.") for n in nodes), "the layer stack is drawn"
    assert not COGVLM_WORDS.search(dot), COGVLM_WORDS.search(dot)
    html = render_html(trace)
    assert 'id="tokens"' not in html and "vision tokens" not in html
    assert not re.search(r"CogVLM|vision-expert|GLU adapter", html)


def test_t5_fails_inside_sat_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SAT 0.4.12's T5Model passes use_bias twice to BaseTransformer: a SAT bug, reported as the script's."""
    assert main(["run", "-o", str(tmp_path / "out"), str(SCRIPT), "t5"]) == 1
    assert "got multiple values for keyword argument 'use_bias'" in capsys.readouterr().err


def test_gpu_only_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "needs_gpu.py"
    script.write_text("import torch\ntorch.zeros(1).cuda()\n")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["run", "-o", str(tmp_path / "out"), str(script)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and f"{script}:2" in err[0] and "needs a CUDA GPU" in err[0]


def test_a_script_forward_gets_the_token_layout_and_its_own_roots(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A plain script (not cogtrace report): the adapter reads the token layout off the context
    forward's own masks, and a module called outside the model (a preprocessing step) gets its
    own root instead of merging with the model's."""
    script = tmp_path / "forward.py"
    script.write_text(
        "import torch\n"
        "from tracer.cogvlm.adapter import ADAPTER\n"
        "result = ADAPTER.build('tiny/cogvlm-chat-v1.1')\n"
        "inputs = ADAPTER.forward_inputs(result.args, text_tokens=3, seed=0)\n"
        "inputs['vision_image'] = torch.nn.Identity()(inputs['vision_image'])  # a transform outside the model\n"
        "with torch.no_grad():\n"
        "    result.model(**inputs)\n")
    out = tmp_path / "out"
    assert main(["run", "-o", str(out), str(script)]) == 0, capsys.readouterr().err
    with (out / "trace.json").open(encoding="utf-8") as f:
        trace = Trace.load(f)
    layout = trace.meta["token_layout"]
    image = sum(layout["image_rope_mask"])
    assert image > 0 and sum(layout["image_embed_mask"]) == image + 2
    assert layout["pieces"].count("<image>") == image and layout["pieces"][-1].startswith("#")
    paths = {e.data["path"] for e in trace.of("module")}
    assert "<Identity>" in paths and "" in paths  # two roots, never merged
    roots = [e for e in trace.of("module") if e.data["path"] == ""]
    assert all(e.data["class_name"] == "CogVLMModel" for e in roots)
    assert "tokens" in views_for(trace)


def test_readme_example_generates_with_summary_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/sat_llama.py (the README's ``cogtrace run`` line): a plain SAT LLaMA generating with
    filling_sequence gets its steps recorded like CogVLM's — the first in full, later ones as
    summaries — and the same tokens as run without the tracer."""
    import runpy

    from tracer.cpu import cpu_substitutions
    from tracer.schema import DEFAULT_MAX_STEPS

    example = Path(__file__).parents[1] / "examples" / "sat_llama.py"
    monkeypatch.setattr("sys.argv", [str(example), "--tokens", "12"])
    with cpu_substitutions():  # SAT's Triton rotary kernel needs CUDA: the same math in torch, untraced
        runpy.run_path(str(example), run_name="__main__")
    plain = capsys.readouterr().out.strip().splitlines()[-1]
    out = tmp_path / "run"
    assert main(["run", "-o", str(out), str(example), "--tokens", "12"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[0] == plain  # the script's own print, unchanged
    with (out / "trace.json").open(encoding="utf-8") as f:
        trace = Trace.load(f)
    steps = [e for e in trace.of("generation") if e.data["phase"] != "call"]
    assert len(steps) == 12 and steps[0].name == "context"
    assert [s.data["detail"] for s in steps] == ["full"] * (DEFAULT_MAX_STEPS + 1) + ["summary"] * (11 - DEFAULT_MAX_STEPS)
    roots = [e for e in trace.of("module") if e.data["path"] == ""]
    assert {e.data["class_name"] for e in roots} == {"LLaMAModel"} and len(roots) == DEFAULT_MAX_STEPS + 1
    assert [s.data["sampled_token"] for s in steps] == [int(t) for t in plain.split("[")[1].rstrip("]").split(",")]
