"""Checkpoints: SAT's layout, safe loading, the strict check, generated tiny checkpoints.

Most tests use the tiny ``cogvlm-base-224`` (256 image tokens: the fastest forward pass).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import sat.model.base_model as sat_base_model
import torch
from conftest import tiny_forward_inputs
from sat.model.base_model import AutoModel
from sat.training.model_io import load_checkpoint as sat_load_checkpoint

from tracer.cogvlm import checkpoint as ckpt
from tracer.cogvlm.build import build_model
from tracer.cogvlm.checkpoint import (
    CheckpointError,
    load_model,
    loader_args,
    read_state_dict,
    save_checkpoint,
)
from tracer.cogvlm.config import load_config
from tracer.cogvlm.model import CogVLMModel
from tracer.errors import UserError

TINY = "tiny/cogvlm-base-224"
SEED = 4321


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny checkpoint saved once for the module, and the state dict it holds."""
    result = build_model(TINY, seed=SEED)
    directory = save_checkpoint(result.model, result.config, tmp_path_factory.mktemp("saved") / "ckpt")
    return directory, {k: v.clone() for k, v in result.model.state_dict().items()}


@pytest.fixture()
def copy(saved: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> Path:
    """A private copy of the saved checkpoint, free to damage."""
    return Path(shutil.copytree(saved[0], tmp_path / "ckpt"))


def logits(model: torch.nn.Module, args: argparse.Namespace) -> torch.Tensor:
    with torch.no_grad():
        return model(**tiny_forward_inputs(args))[0]


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def message(error: pytest.ExceptionInfo[CheckpointError]) -> str:
    text = str(error.value)
    assert isinstance(error.value, UserError)
    return text


# ---------------------------------------------------------------------------------------------
# Layout and round trip


def test_layout_is_sats(saved: tuple[Path, dict[str, torch.Tensor]]) -> None:
    directory, state = saved
    assert sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")) == [
        "1", "1/mp_rank_00_model_states.pt", "latest", "model_config.json"]
    assert (directory / "latest").read_text() == "1"
    assert (directory / "model_config.json").read_bytes() == load_config(TINY).path.read_bytes()
    raw = torch.load(directory / "1" / "mp_rank_00_model_states.pt", weights_only=True)
    assert list(raw) == ["module"]
    assert type(raw["module"]) is dict
    assert_same_state(raw["module"], state)


def test_round_trip_through_from_pretrained(saved: tuple[Path, dict[str, torch.Tensor]]) -> None:
    directory, state = saved
    original = build_model(TINY, seed=SEED)
    model, args = load_model(directory, seed=1)  # another seed: every value must come from the file
    assert isinstance(model, CogVLMModel) and not model.training
    assert_same_state(model.state_dict(), state)
    assert torch.equal(logits(model, args), logits(original.model, original.args))


@pytest.mark.parametrize("with_args", [True, False], ids=["our-args", "no-args"])
def test_automodel_resolves_our_checkpoint(saved: tuple[Path, dict[str, torch.Tensor]], with_args: bool) -> None:
    directory, state = saved
    args = loader_args(skip_init=True) if with_args else None  # None: SAT fills CogVLMModel's defaults
    model, args = AutoModel.from_pretrained(str(directory), args=args)
    assert type(model) is CogVLMModel
    assert args.model_class == "CogVLMModel"
    assert_same_state(model.state_dict(), state)


def test_namespace_config_is_what_sat_dumps(tmp_path: Path) -> None:
    result = build_model(TINY, seed=SEED)
    directory = save_checkpoint(result.model, result.args, tmp_path / "ckpt", iteration=7)
    assert (directory / "latest").read_text() == "7"
    written = json.loads((directory / "model_config.json").read_text())
    source = load_config(TINY).values
    assert {k: v for k, v in source.items() if not k.startswith("_")} == written
    model, _ = load_model(directory)
    assert_same_state(model.state_dict(), result.model.state_dict())


def test_load_goes_through_sats_load_checkpoint(saved: tuple[Path, dict[str, torch.Tensor]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def recording(model: Any, args: Any, load_path: Any = None, **kw: Any) -> Any:
        calls.append(str(load_path))
        return sat_load_checkpoint(model, args, load_path=load_path, **kw)

    monkeypatch.setattr(sat_base_model, "load_checkpoint", recording)
    load_model(saved[0])
    assert calls == [str(saved[0])]
    calls.clear()
    model, _ = load_model(saved[0], build_only=True)
    assert calls == []
    assert all(torch.isfinite(p).all() for p in model.parameters())  # seeded, not uninitialised


def test_a_trace_shows_only_the_articles_load_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check's meta build and the generation stay out of a trace: miss and hit look alike."""
    from tracer.session import trace

    monkeypatch.setenv("COGTRACE_CACHE", str(tmp_path / "cache"))
    names = []
    for _ in range(2):  # cache miss (generates), then cache hit
        with trace(categories=["construction"]) as handle:
            load_model(TINY, seed=SEED)
        assert handle.trace is not None
        names.append([e.name for e in handle.trace.events])
    assert names[0] == names[1]
    assert [n for n in names[0] if n in ("get_model", "load_checkpoint")] == ["get_model", "load_checkpoint"]


def test_meta_build_only_is_full_size_and_free() -> None:
    model, args = load_model("full/cogvlm-grounding-generalist", device="meta", build_only=True)
    assert args.device == "meta"
    assert sum(p.numel() for p in model.parameters()) == 17_639_685_376
    with pytest.raises(CheckpointError, match="device 'meta' holds no values"):
        load_model(TINY, device="meta")


# ---------------------------------------------------------------------------------------------
# Saving safely


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = build_model(TINY, seed=SEED)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(result.model, result.config, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no temporary folder


def test_save_refuses_to_overwrite_and_meta(saved: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    result = build_model(TINY, seed=SEED)
    with pytest.raises(FileExistsError):
        save_checkpoint(result.model, result.config, saved[0])
    meta = build_model(TINY, device="meta")
    with pytest.raises(ValueError, match="meta"):
        save_checkpoint(meta.model, meta.config, tmp_path / "meta")
    with pytest.raises(ValueError, match="iteration"):
        save_checkpoint(result.model, result.config, tmp_path / "zero", iteration=0)


# ---------------------------------------------------------------------------------------------
# Generated tiny checkpoints and the cache


def test_tiny_config_generates_once_then_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COGTRACE_CACHE", str(tmp_path / "cache"))
    model, args = load_model(TINY, seed=SEED)
    [entry] = (tmp_path / "cache" / "checkpoints").iterdir()
    assert entry.name.startswith("cogvlm-base-224-")
    weights = entry / "1" / "mp_rank_00_model_states.pt"
    mtime = weights.stat().st_mtime_ns
    # Reproducible from the seed: the same values as a plain seeded build.
    assert_same_state(model.state_dict(), build_model(TINY, seed=SEED).model.state_dict())

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("regenerated a cached checkpoint")

    monkeypatch.setattr(ckpt, "_generate", must_not_run)
    again, _ = load_model(TINY, seed=SEED)
    assert weights.stat().st_mtime_ns == mtime
    assert_same_state(again.state_dict(), model.state_dict())
    assert [p.name for p in (tmp_path / "cache" / "checkpoints").iterdir()] == [entry.name]


def test_cache_key_covers_seed_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COGTRACE_CACHE", str(tmp_path / "elsewhere"))
    config = load_config(TINY)
    a = ckpt._cache_dir(config, 1)
    assert a.parent == tmp_path / "elsewhere" / "checkpoints"
    assert a != ckpt._cache_dir(config, 2)
    assert a != ckpt._cache_dir(load_config("tiny/cogvlm-base-490"), 1)
    assert a == ckpt._cache_dir(config, 1)
    monkeypatch.delenv("COGTRACE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ckpt.cache_root() == tmp_path / "xdg" / "cogvlm-tracer"


def test_concurrent_generation_uses_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process finishes the same checkpoint while we build ours: we keep theirs."""
    monkeypatch.setenv("COGTRACE_CACHE", str(tmp_path / "cache"))
    config = load_config(TINY)
    target = ckpt._cache_dir(config, SEED)
    real_build = ckpt.build_model

    def racing_build(*args: Any, **kwargs: Any) -> Any:
        result = real_build(*args, **kwargs)
        save_checkpoint(result.model, config, target)  # the other process wins the rename
        return result

    monkeypatch.setattr(ckpt, "build_model", racing_build)
    assert ckpt.generated_checkpoint(config, SEED) == target
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary left
    assert ckpt.checkpoint_file(target).is_file()


def test_stale_temporary_folders_are_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COGTRACE_CACHE", str(tmp_path / "cache"))
    parent = tmp_path / "cache" / "checkpoints"
    stale, fresh = parent / ".x.tmp-1-aaaa", parent / ".y.tmp-2-bbbb"
    stale.mkdir(parents=True)
    fresh.mkdir()
    os.utime(stale, (0, 0))  # a killed generation from long ago
    ckpt.generated_checkpoint(load_config(TINY), SEED)
    assert not stale.exists() and fresh.exists()  # a live generation elsewhere is left alone


def test_unwritable_cache_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("COGTRACE_CACHE", str(tmp_path / "file" / "cache"))  # under a file: cannot mkdir
    with pytest.raises(CheckpointError) as e:
        load_model(TINY, seed=SEED)
    text = message(e)
    assert "\n" not in text and "cannot write the generated tiny checkpoint" in text and "COGTRACE_CACHE" in text


def test_full_config_without_weights_is_refused() -> None:
    with pytest.raises(CheckpointError) as e:
        load_model("full/cogvlm-base-224")
    text = message(e)
    assert "no weights here" in text and "too big to generate" in text and "build_only=True" in text


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints: one line naming the file and what was expected


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickled_namespace(path: Path) -> None:
    torch.save({"module": {}, "args": argparse.Namespace(lr=1.0)}, path)


def _not_module(path: Path) -> None:
    torch.save({"state_dict": {}}, path)


PT = "1/mp_rank_00_model_states.pt"


@pytest.mark.parametrize(("damage", "names", "expect"), [
    (lambda d: (d / "latest").unlink(), "latest", "missing; expected a text file holding the iteration"),
    (lambda d: (d / "latest").write_text("2"), "2/mp_rank_00_model_states.pt", "'latest' says iteration '2'"),
    (lambda d: (d / "latest").write_text("best"), "latest", "holds 'best'; expected a positive iteration number"),
    (lambda d: (d / "latest").write_text("0"), "latest", "expected a positive iteration number"),
    (lambda d: _truncate(d / PT), PT, "not a readable PyTorch weights file"),
    (lambda d: _write(d / PT, b""), PT, "not a readable PyTorch weights file"),
    (lambda d: _write(d / PT, b"this is not a checkpoint"), PT, "expected a file written by torch.save"),
    (lambda d: _pickled_namespace(d / PT), PT, "refuses to run; expected only tensors"),
    (lambda d: _not_module(d / PT), PT, "expected {'module': state_dict}"),
], ids=["no-latest", "latest-to-missing-iteration", "latest-not-numeric", "latest-zero", "truncated",
        "empty", "garbage", "pickled-namespace", "no-module"])
def test_damaged_checkpoint(copy: Path, damage: Any, names: str, expect: str) -> None:
    damage(copy)
    with pytest.raises(CheckpointError) as e:
        load_model(copy)
    text = message(e)
    assert "\n" not in text
    assert text.startswith(str(copy / names) + ":")
    assert expect in text


def test_damaged_cache_entry_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COGTRACE_CACHE", str(tmp_path / "cache"))
    load_model(TINY, seed=SEED)
    entry = ckpt._cache_dir(load_config(TINY), SEED)
    _truncate(entry / PT)
    with pytest.raises(CheckpointError, match=f"delete {entry} to regenerate"):
        load_model(TINY, seed=SEED)


def test_weights_only_loadable(saved: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path = saved[0] / PT
    with open(path, "rb") as f:  # nothing a restricted unpickler would refuse
        torch.load(f, weights_only=True)
    assert set(read_state_dict(path)) == set(saved[1])


# ---------------------------------------------------------------------------------------------
# Missing, unexpected and wrong-shaped weights


def _rewrite(directory: Path, edit: Any) -> None:
    path = directory / PT
    module = torch.load(path, weights_only=True)["module"]
    edit(module)
    torch.save({"module": module}, path)


def test_mismatch_lists_missing_unexpected_and_shapes(copy: Path) -> None:
    def edit(m: dict[str, torch.Tensor]) -> None:
        del m["mixins.eva.boi"]
        m["mixins.eva.extra"] = torch.zeros(2)
        m["mixins.lm.lm_head.weight"] = torch.zeros(10, 64)

    _rewrite(copy, edit)
    with pytest.raises(CheckpointError) as e:
        load_model(copy)
    lines = message(e).splitlines()
    assert lines[0] == f"{copy / PT}: weights do not fit the model: 1 missing, 1 unexpected, 1 with the wrong shape"
    assert lines[1:] == [
        "  missing (in the model, not in the checkpoint):",
        "    mixins.eva.boi",
        "  unexpected (in the checkpoint, not in the model):",
        "    mixins.eva.extra",
        "  wrong shape:",
        "    mixins.lm.lm_head.weight: checkpoint [10, 64] vs model [2048, 64]",
    ]


def test_long_mismatch_lists_are_truncated(copy: Path) -> None:
    def edit(m: dict[str, torch.Tensor]) -> None:
        for key in [k for k in m if k.startswith("mixins.eva.vit_model.")]:
            del m[key]

    _rewrite(copy, edit)
    with pytest.raises(CheckpointError) as e:
        load_model(copy)
    lines = message(e).splitlines()
    removed = 4 + 2 * 12  # patch proj w+b, CLS + positions, 12 tensors in each of 2 layers
    assert f"{removed} missing, 0 unexpected, 0 with the wrong shape" in lines[0]
    assert len(lines) == 2 + ckpt.MAX_LISTED + 1
    assert lines[-1] == f"    ... and {removed - ckpt.MAX_LISTED} more"


def test_a_config_that_does_not_fit_the_weights(tmp_path: Path) -> None:
    """Weights of the 224-px model under the 490-px config: one position table is wrong."""
    result = build_model(TINY, seed=SEED)
    directory = save_checkpoint(result.model, "tiny/cogvlm-base-490", tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"transformer.position_embeddings.weight: checkpoint \[257, 48\] "
                                              r"vs model \[1226, 48\]"):
        load_model(directory)


def test_tiny_weights_under_a_full_config_fail_before_any_allocation(copy: Path) -> None:
    """The check compares with a meta build, so a 17.6B mismatch costs no memory."""
    shutil.copy(load_config("full/cogvlm-chat-v1.1").path, copy / "model_config.json")
    with pytest.raises(CheckpointError) as e:
        load_model(copy)
    first, *rest = message(e).splitlines()
    assert "missing" in first and "with the wrong shape" in first
    assert "    mixins.lm.lm_head.weight: checkpoint [2048, 64] vs model [32000, 4096]" in rest
    assert rest[-1].startswith("    ... and ") and rest[-1].endswith(" more")


def test_sat_alone_would_not_stop_on_unexpected_keys(copy: Path) -> None:
    """Why we check first: SAT's load_checkpoint only prints unexpected keys and carries on."""
    _rewrite(copy, lambda m: m.__setitem__("mixins.eva.extra", torch.zeros(2)))
    model, args = load_model(copy, build_only=True)
    assert sat_load_checkpoint(model, args, load_path=str(copy)) == 1  # iteration, no error
    with pytest.raises(CheckpointError, match="1 unexpected"):
        load_model(copy)


def test_checkpoint_error_is_a_user_error() -> None:
    assert issubclass(CheckpointError, UserError)
    assert os.environ["COGTRACE_CACHE"]  # every test runs on a private cache
