"""CogVLM checkpoints across model-parallel sizes, through SAT's own ``from_pretrained``.

Run on every rank of a ``torchrun`` job (``RANK`` / ``WORLD_SIZE`` set); SAT initialises
``torch.distributed`` (gloo without CUDA) and its ``mpu`` on the first model build.

* :func:`load_parallel` — a checkpoint saved at the world size loads as is (rank r reads
  ``<iteration>/mp_rank_{r:02d}_model_states.pt``); an mp=1 checkpoint is split at load
  (``overwrite_args={'model_parallel_size': N}``, as upstream's ``cli_demo_sat.py`` does),
  with :mod:`.cpu_split` standing in for SAT's GPU-only sender. Any other size is refused in
  one line (SAT would fail with "model_parallel_size is inconsistent", upstream issue #419).
* :func:`save_parallel` — each rank writes its own shard, SAT's layout, all or nothing.
* :func:`merge_parallel` — mp=N back to one file as upstream's ``utils/merge_model.py`` does:
  ``from_pretrained(..., overwrite_args={'model_parallel_size': 1})``; rank 0 gets the full model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cogvlm.build import DEFAULT_SEED
from ..cogvlm.checkpoint import (
    TRACKER_FILE,
    CheckpointError,
    _cache_dir,
    _config_text,
    _looks_like_checkpoint,
    checkpoint_file,
    loader_args,
    read_state_dict,
    save_checkpoint,
    verify_state_dict,
)
from ..cogvlm.config import CONFIG_FILE, ModelConfig, load_config
from .checks import ParallelError, check_partition, check_world_size
from .cpu_split import split_at_load_on_cpu

__all__ = ["ensure_weights", "load_parallel", "merge_parallel", "rank_file", "save_parallel", "saved_size",
           "world"]


_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                  "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def saved_size(directory: Path) -> int:
    """The model-parallel size a checkpoint was saved at (its model_config.json, default 1)."""
    values = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    return int(values.get("model_parallel_size", 1) or 1)


def rank_file(directory: Path, rank: int) -> Path:
    """``<iteration>/mp_rank_{rank:02d}_model_states.pt``, SAT's ``get_checkpoint_name``."""
    first = checkpoint_file(directory) if rank == 0 else None
    if first is not None:
        return first
    iteration = (directory / TRACKER_FILE).read_text(encoding="utf-8").strip()
    path = directory / iteration / f"mp_rank_{rank:02d}_model_states.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint saved at model_parallel_size {saved_size(directory)} "
                              f"needs one file per rank")
    return path


def ensure_weights(config: ModelConfig, seed: int = DEFAULT_SEED) -> Path:
    """The checkpoint folder for ``config``: itself, or its generated mp=1 tiny checkpoint.

    Generation builds a full single-process model, so it runs in a child process without
    torchrun's variables (inside a rank, SAT would build a sharded model). Ranks that race
    each write their own temporary folder; the first rename wins (as in single-process use).
    """
    if _looks_like_checkpoint(config.directory):
        return config.directory
    target = _cache_dir(config, seed)
    if not (target / TRACKER_FILE).is_file():
        # Without torchrun's variables: with them (TORCHELASTIC_USE_AGENT_STORE above all) the
        # child's process group would wait for the job's rendezvous store forever.
        env = {k: v for k, v in os.environ.items() if k not in _TORCHRUN_VARS and not k.startswith("TORCHELASTIC_")}
        code = ("import sys; from tracer.cogvlm.config import load_config; "
                "from tracer.cogvlm.checkpoint import generated_checkpoint; "
                "generated_checkpoint(load_config(sys.argv[1]), int(sys.argv[2]))")
        done = subprocess.run([sys.executable, "-c", code, str(config.path), str(seed)], env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0 or not (target / TRACKER_FILE).is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise CheckpointError(f"{config.directory}: could not generate its tiny checkpoint ({last})")
    return target


def _check_rank_file(directory: Path, rank: int, expected: dict[str, torch.Size]) -> None:
    path = rank_file(directory, rank)
    shapes = {name: tensor.shape for name, tensor in read_state_dict(path).items()}
    verify_state_dict(shapes, expected, where=str(path))


def load_parallel(spec: str | Path | ModelConfig, *, split: bool = True,
                  seed: int = DEFAULT_SEED) -> tuple[nn.Module, argparse.Namespace]:
    """Load CogVLM on this rank at model_parallel_size = world size; returns (model, args), eval mode.

    ``split=False`` refuses an mp=1 checkpoint at world size > 1 instead of splitting it.
    """
    from ..cogvlm.model import CogVLMModel

    rank, size = world()
    config = spec if isinstance(spec, ModelConfig) else load_config(spec)
    check_world_size(config.values, size)
    directory = ensure_weights(config, seed)
    saved = saved_size(directory)
    args = loader_args(device="cpu", seed=seed, skip_init=True)
    if saved == size:
        from ..cogvlm.build import build_model
        from ..cogvlm.checkpoint import _untraced

        with _untraced():  # the check's meta build is not part of the traced flow
            meta = build_model(config, device="meta", seed=seed).model
        _check_rank_file(directory, rank, {n: t.shape for n, t in meta.state_dict().items()})
        model, args = CogVLMModel.from_pretrained(str(directory), args=args)
    elif saved == 1 and split:
        with split_at_load_on_cpu():
            model, args = CogVLMModel.from_pretrained(str(directory), args=args,
                                                      overwrite_args={"model_parallel_size": size})
        args.model_parallel_size = size
    elif saved == 1:
        raise ParallelError(f"{directory}: saved at model_parallel_size 1, running {size} ranks without the split "
                            f"path; expected a checkpoint saved at {size}, or split at load (SAT: overwrite_args="
                            f"{{'model_parallel_size': {size}}})")
    else:
        raise ParallelError(f"{directory}: saved at model_parallel_size {saved}, running {size} ranks; SAT splits only "
                            f"mp=1 checkpoints at load (\"model_parallel_size is inconsistent\"); expected {saved} "
                            f"ranks, or merge it to 1 first (upstream utils/merge_model.py)")
    model.eval()
    from sat import mpu

    check_partition(model, mpu.get_model_parallel_world_size(), rank)
    return model, args


def _shared_tmp(directory: Path) -> Path:
    """One temporary folder name for every rank, chosen by rank 0 and broadcast."""
    name = [f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"]
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.broadcast_object_list(name, 0)
    return directory.parent / name[0]


def save_parallel(model: nn.Module, args: argparse.Namespace, directory: str | Path, iteration: int = 1) -> Path:
    """Every rank writes ``<iteration>/mp_rank_{r:02d}_model_states.pt`` (SAT's names) into one
    folder, with ``model_config.json`` saying ``model_parallel_size``; renamed into place by rank 0
    once all shards are written, so a failure leaves no half checkpoint."""
    from sat import mpu

    rank, size = mpu.get_model_parallel_rank(), mpu.get_model_parallel_world_size()
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"{directory}: already exists; refusing to overwrite a checkpoint")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = _shared_tmp(directory)
    distributed = torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
    ok = [True]
    try:
        (tmp / str(iteration)).mkdir(parents=True, exist_ok=True)
        module = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
        torch.save({"module": module}, tmp / str(iteration) / f"mp_rank_{rank:02d}_model_states.pt")
        if rank == 0:
            saved_args = argparse.Namespace(**vars(args))
            saved_args.model_parallel_size = size
            (tmp / CONFIG_FILE).write_text(_config_text(model, saved_args), encoding="utf-8")
            (tmp / TRACKER_FILE).write_text(str(iteration), encoding="utf-8")
    except BaseException:
        ok = [False]
        raise
    finally:
        if distributed:
            flags: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(flags, ok[0])
            ok = [all(flags)]
        if rank == 0:
            if ok[0]:
                os.rename(tmp, directory)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        if distributed:
            torch.distributed.barrier()
    return directory


def merge_parallel(directory: str | Path, out: str | Path | None = None,
                   seed: int = DEFAULT_SEED) -> tuple[nn.Module, argparse.Namespace]:
    """Merge an mp=N checkpoint on N ranks, as upstream's ``merge_model.py``: SAT's
    ``from_pretrained(..., overwrite_args={'model_parallel_size': 1})``. Rank 0 returns the full
    model (eval mode) and, with ``out``, saves it as an mp=1 checkpoint; the other ranks return
    their shard, which is stale from then on (SAT reports world size 1; :func:`check_partition`
    names it)."""
    from ..cogvlm.model import CogVLMModel

    rank, size = world()
    directory = Path(directory)
    saved = saved_size(directory)
    if saved != size:
        raise ParallelError(f"{directory}: saved at model_parallel_size {saved}; merging needs exactly {saved} ranks "
                            f"(running {size})")
    args = loader_args(device="cpu", seed=seed, skip_init=True)
    model, margs = CogVLMModel.from_pretrained(str(directory), args=args, overwrite_args={"model_parallel_size": 1})
    model.eval()
    if rank == 0 and out is not None:
        margs.model_parallel_size = 1
        save_checkpoint(model, margs, out)
    if torch.distributed.is_initialized():
        with contextlib.suppress(RuntimeError):
            torch.distributed.barrier()
    return model, margs
