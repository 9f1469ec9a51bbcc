"""Done-when of fine-tuning: 3 LoRA iterations of the tiny model through SAT's ``training_main`` +
DeepSpeed on CPU (one subprocess: DeepSpeed and torch.distributed keep process-wide state): loss
finite and falling, a SAT-layout checkpoint written, the merged export answering through
``cogtrace chat``, frozen parameters bit-unchanged, and the trace holding the LoRA swap, the
trainable table, backward and optimizer events."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from tracer.cli import main
from tracer.cogvlm.checkpoint import checkpoint_file, read_state_dict
from tracer.cogvlm.config import load_config
from tracer.finetune.data import write_dataset
from tracer.finetune.train import DEFAULT_DEEPSPEED_CONFIG
from tracer.schema import Trace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("finetune")
    data = write_dataset(tmp / "data", train=1, valid=1, seed=11)
    for label in (data / "train" / "labels").iterdir():  # one image, its box question only: same batch each step
        doc = json.loads(label.read_text())
        doc["conversations"] = doc["conversations"][-2:]
        label.write_text(json.dumps(doc))
    ds = json.loads(DEFAULT_DEEPSPEED_CONFIG.read_text())
    ds["optimizer"]["params"]["lr"] = 0.2  # SAT holds finetune lr at 5 % for 100 iterations: 0.01 here
    (tmp / "ds.json").write_text(json.dumps(ds))
    out = tmp / "out"
    # DeepSpeed JIT-compiles its CPU communication op once (a C++ build, minutes on a busy
    # machine): one build per machine, shared by test sessions, instead of one per private cache.
    extensions = Path(tempfile.gettempdir()) / f"cogtrace-torch-extensions-{os.getuid()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "COGTRACE_CACHE": str(tmp / "cache"),
           "TORCH_EXTENSIONS_DIR": str(extensions)}
    proc = subprocess.run(
        [sys.executable, "-m", "tracer.cli", "finetune", "tiny/cogvlm-grounding-trained", "--data", str(data),
         "-o", str(out), "--iters", "3", "--lora-rank", "4", "--deepspeed-config", str(tmp / "ds.json"), "--dropout", "0"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out, "data": data, "tmp": tmp, "cache": tmp / "cache"}


def _trace(out: Path) -> Trace:
    with open(out / "trace.json", encoding="utf-8") as f:
        return Trace.load(f)


def test_loss_finite_and_falling(run: dict[str, Path]) -> None:
    steps = [e for e in _trace(run["out"]).of("training") if e.name == "train_step"]
    losses = [float(e.data["loss"]) for e in steps]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses[2] < losses[1] < losses[0], losses


def test_sat_checkpoint_and_frozen_parameters_unchanged(run: dict[str, Path]) -> None:
    (experiment,) = (run["out"] / "checkpoints").iterdir()
    assert not (run["tmp"] / "runs").exists()  # SAT's summary writer stays inside -o, not in the cwd
    assert (experiment / "latest").read_text().strip() == "3"
    assert json.loads((experiment / "model_config.json").read_text())["model_class"] == "FineTuneTrainCogVLMModel"
    saved = torch.load(experiment / "3" / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]
    base = read_state_dict(checkpoint_file(load_config("tiny/cogvlm-grounding-trained").directory))  # shipped
    lora = [k for k in saved if ".matrix_" in k]
    assert len(lora) == 32  # 4 swapped Linears per tower x (3 + 1 partitions) x (A, B)
    for name, tensor in base.items():
        prefix, leaf = name.rsplit(".", 1)
        key = name if name in saved else f"{prefix}.original.{leaf}"  # a swapped Linear keeps it as .original
        assert torch.equal(saved[key], tensor), name  # frozen: bit-unchanged
    assert any(not torch.equal(saved[k], torch.zeros_like(saved[k])) for k in lora if "matrix_B" in k)


def test_export_answers_through_cogtrace_chat(run: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    image = next((run["data"] / "valid" / "images").iterdir())
    code = main(["chat", str(run["out"] / "export"), "--image", str(image), "--query", "What colour is the circle?",
                 "--max-length", "120", "--output", str(run["tmp"] / "output.png")])
    assert code == 0
    assert "Model:" in capsys.readouterr().out
    weights = read_state_dict(run["out"] / "export" / "3" / "mp_rank_00_model_states.pt")
    assert not any(".matrix_" in k or ".original." in k for k in weights)  # merged: upstream's key names


def test_trace_holds_the_training_events(run: dict[str, Path]) -> None:
    trace = _trace(run["out"])
    names = [e.name for e in trace.of("training")]
    assert names.count("LoraMixin.reinit") == 2 and names.count("LoraMixin.merge_lora") == 2
    assert {"deepspeed.initialize", "trainable_parameters", "train_step", "forward", "backward", "optimizer.step",
            "save_checkpoint"} <= set(names)
    events = {e.name: e for e in trace.of("training")}
    swap = next(e for e in trace.of("training") if e.name == "LoraMixin.reinit")
    assert [s["path"] for s in swap.data["swapped"]] == [
        f"transformer.layers.{i}.attention.{n}" for i in (0, 1) for n in ("query_key_value", "dense")]
    assert all(s["B_is_zero"] for s in swap.data["swapped"])
    table = events["trainable_parameters"].data
    assert table["trainable"] == sum(r["count"] for r in table["rows"]) == 7168
    assert all(r["why"].startswith("LoRA factor") for r in table["rows"])
    engine = events["deepspeed.initialize"].data
    assert (engine["zero_stage"], engine["world_size"], engine["backend"]) == (1, 1, "gloo")
    first_backward = next(e for e in trace.of("training") if e.name == "backward")
    groups = first_backward.data["groups"]
    assert groups["language LoRA A"]["norm"] == 0.0 < groups["language LoRA B"]["norm"]  # B = 0: A gets no gradient yet
    step = events["optimizer.step"].data
    assert step["state_numel"] == 2 * 7168  # AdamW: exp_avg and exp_avg_sq per trained weight
    assert (run["out"] / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Training steps" in (run["out"] / "training.txt").read_text()


def test_render_training_views(run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = str(run["out"] / "trace.json")
    assert main(["render", trace, "--format", "training"]) == 0
    text = capsys.readouterr().out
    assert "Trainable parameters: 7,168" in text and "ZeRO stage 1, world size 1, backend gloo" in text
    assert main(["render", trace, "--format", "loss", "-o", str(tmp_path / "loss.png")]) == 0
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    # The explorer page shows the training views too (a section per view the trace has data for).
    assert main(["render", trace, "--format", "html", "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'id="view-training"' in page and 'id="view-loss"' in page and "data:image/png;base64," in page
