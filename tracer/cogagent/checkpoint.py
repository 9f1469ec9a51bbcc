"""Load CogAgent through SAT's own ``CogAgentModel.from_pretrained``, as upstream's ``cli_demo_sat.py``.

The same rules as CogVLM's loader (:mod:`tracer.cogvlm.checkpoint`, whose checks and SAT layout
we reuse): a checkpoint folder is checked key for key against a meta build before SAT reads
it; a tiny config without weights gets a checkpoint generated from the seed once, cached under
``$COGTRACE_CACHE/checkpoints``, so the real ``from_pretrained -> load_checkpoint`` path runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import uuid
from importlib.metadata import version
from pathlib import Path

import torch

from ..cogvlm.build import DEFAULT_SEED, environment_args, placement
from ..cogvlm.checkpoint import (
    GENERATE_LIMIT,
    TRACKER_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    _untraced,
    cache_root,
    checkpoint_file,
    read_state_dict,
    verify_state_dict,
)
from ..cogvlm.config import CONFIG_FILE, ModelConfig
from .build import build_model
from .config import load_config
from .model import CogAgentModel

__all__ = ["generated_checkpoint", "load_model"]

_WEIGHT_CODE = ("model.py", "mixins.py", "encoder.py", "build.py")


def _cache_dir(config: ModelConfig, seed: int) -> Path:
    """One folder per config, seed and version of the code that draws the weights."""
    digest = hashlib.sha256(f"seed={seed}\0sat={version('SwissArmyTransformer')}\0torch={torch.__version__}".encode())
    for source in _WEIGHT_CODE:
        digest.update((Path(__file__).parent / source).read_bytes())
    digest.update(config.path.read_bytes())
    return cache_root() / "checkpoints" / f"{config.name}-{digest.hexdigest()[:12]}"


def generated_checkpoint(config: ModelConfig, seed: int = DEFAULT_SEED) -> Path:
    """A checkpoint of ``config`` with weights drawn from ``seed``, in SAT's layout; made once."""
    target = _cache_dir(config, seed)
    if (target / TRACKER_FILE).is_file():
        return target
    model = build_model(config, device="cpu", seed=seed).model
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "1").mkdir(parents=True)
        (tmp / CONFIG_FILE).write_bytes(config.path.read_bytes())
        torch.save({"module": {k: v.detach().cpu() for k, v in model.state_dict().items()}},
                   tmp / "1" / WEIGHTS_FILE)
        (tmp / TRACKER_FILE).write_text("1", encoding="utf-8")
        try:
            os.rename(tmp, target)  # atomic; a concurrent writer's identical folder wins
        except OSError:
            if not (target / TRACKER_FILE).is_file():
                raise
    except OSError as e:
        raise CheckpointError(f"{target}: cannot write the generated tiny checkpoint ({e.__class__.__name__}: "
                              f"{e}); expected a writable cache folder (set COGTRACE_CACHE)") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_model(spec: str | Path | ModelConfig, *, device: str = "cpu", build_only: bool = False,
               seed: int = DEFAULT_SEED) -> tuple[CogAgentModel, argparse.Namespace]:
    """CogAgent from a checkpoint folder, or from a config (tiny: generated weights), via ``from_pretrained``."""
    config = spec if isinstance(spec, ModelConfig) else load_config(spec)
    directory = config.directory
    if not build_only:
        with _untraced():  # our check and the generation stay out of a trace: it shows the article's flow
            expected = {k: v.shape for k, v in build_model(config, device="meta", seed=seed).model.state_dict().items()}
            if not (directory / TRACKER_FILE).exists():
                count = sum(s.numel() for s in expected.values())
                if count > GENERATE_LIMIT:
                    raise CheckpointError(f"{directory}: no weights here (no '{TRACKER_FILE}' file), and at {count:,} "
                                          f"weights the model is too big to generate random ones; expected a "
                                          f"downloaded checkpoint folder, or build_only=True")
                directory = generated_checkpoint(config, seed)
            weights = checkpoint_file(directory)
            verify_state_dict({k: v.shape for k, v in read_state_dict(weights).items()}, expected, where=str(weights))
    args = environment_args(CogAgentModel.get_args(), device=device, seed=seed,
                            skip_init=device == "meta" or not build_only)
    with placement(device, seed):
        model, args = CogAgentModel.from_pretrained(str(directory), args=args, build_only=build_only)
    return model.eval(), args
