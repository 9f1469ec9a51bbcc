"""Bad fine-tuning inputs: one line naming the value and what was expected, exit code 2, nothing
written. All are caught before SAT or DeepSpeed is imported, so these run in well under a second."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracer.cli import main
from tracer.finetune.data import write_dataset
from tracer.finetune.train import DEFAULT_DEEPSPEED_CONFIG

CONFIG = "tiny/cogvlm-grounding-trained"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), train=2, valid=1, seed=2)


def _fails(capsys: pytest.CaptureFixture[str], out: Path, *argv: str) -> str:
    code = main(["finetune", CONFIG, "-o", str(out), *argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("cogtrace finetune: error: "), err
    assert not out.exists()  # nothing half-written
    return lines[0]


def _ds_config(tmp_path: Path, change: dict[str, object]) -> Path:
    config = json.loads(DEFAULT_DEEPSPEED_CONFIG.read_text())
    config.update(change)
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(config))
    return path


def test_empty_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "train" / "images").mkdir(parents=True)
    line = _fails(capsys, tmp_path / "out", "--data", str(tmp_path / "data"))
    assert "images: empty" in line and "labels/<same name>.json" in line


def test_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails(capsys, tmp_path / "out", "--data", str(tmp_path / "nowhere"))
    assert "nowhere: no such folder" in line


def test_unreadable_image(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "data"
    write_dataset(broken, train=2, valid=0, seed=2)
    (broken / "train" / "images" / "00000001.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    line = _fails(capsys, tmp_path / "out", "--data", str(broken))
    assert "00000001.jpg: unreadable image" in line


def test_truncated_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = write_dataset(tmp_path / "data", train=1, valid=0, seed=2)
    image = broken / "train" / "images" / "00000000.jpg"
    image.write_bytes(image.read_bytes()[:300])
    assert "00000000.jpg: unreadable image" in _fails(capsys, tmp_path / "out", "--data", str(broken))


@pytest.mark.parametrize(("label", "expected"), [
    ("{not json", "not JSON"),
    ('{"captions": []}', "expected an object with a 'conversations' list"),
    ('{"conversations": [{"role": "user", "content": "Q"}]}', "expected user/assistant pairs"),
    ('{"conversations": [{"role": "user", "content": "Q"}, {"role": "user", "content": "A"}]}',
     "alternating and non-empty"),
])
def test_malformed_label(tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str, expected: str) -> None:
    broken = write_dataset(tmp_path / "data", train=2, valid=0, seed=2)
    (broken / "train" / "labels" / "00000001.json").write_text(label)
    line = _fails(capsys, tmp_path / "out", "--data", str(broken))
    assert "00000001.json: malformed label" in line and expected in line


def test_image_without_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = write_dataset(tmp_path / "data", train=2, valid=0, seed=2)
    (broken / "train" / "labels" / "00000000.json").unlink()
    assert "00000000.jpg: no label" in _fails(capsys, tmp_path / "out", "--data", str(broken))


@pytest.mark.parametrize("rank", ["0", "-3"])
def test_lora_rank_must_be_positive(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str], rank: str) -> None:
    line = _fails(capsys, tmp_path / "out", "--data", str(data), "--lora-rank", rank)
    assert f"--lora-rank {rank}: expected a positive integer" in line


def test_layer_range_outside_the_model(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails(capsys, tmp_path / "out", "--data", str(data), "--lora-rank", "4", "--layer-range", "0", "5")
    assert "--layer-range 5: outside the model (expected 0-1" in line


@pytest.mark.parametrize(("change", "expected"), [
    ({"bf16": {"enabled": True}}, "'bf16.enabled' is true"),
    ({"fp16": {"enabled": True}}, "'fp16.enabled' is true"),
    ({"optimizer": {"type": "FusedAdam", "params": {"lr": 1e-3}}}, "optimizer 'FusedAdam' is DeepSpeed's fused CUDA"),
    ({"optimizer": {"type": "Adam", "params": {"lr": 1e-3}}}, "optimizer 'Adam' without \"torch_adam\": true"),
    ({"zero_optimization": {"stage": 0}}, "zero_optimization.stage 0; expected 1"),
])
def test_deepspeed_config_asking_for_cuda(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str],
                                          change: dict[str, object], expected: str) -> None:
    ds = _ds_config(tmp_path, change)
    line = _fails(capsys, tmp_path / "out", "--data", str(data), "--deepspeed-config", str(ds))
    assert str(ds) in line and expected in line


def test_output_folder_not_empty(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["finetune", CONFIG, "-o", str(out), "--data", str(data)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_upstream_shaped_script_reports_bad_input(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import runpy

    script = Path(__file__).resolve().parents[1] / "scripts" / "finetune_cogvlm_demo.py"
    demo = runpy.run_path(str(script), run_name="not_main")
    code = demo["main"](["--use_lora", "--lora_rank", "0", "--train-data", str(data / "train"),
                         "--save", str(tmp_path / "out")])
    assert code == 2
    assert "--lora-rank 0: expected a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
