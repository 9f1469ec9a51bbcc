"""CogVLM checkpoints in SAT's layout: save, check, and load through SAT's own ``from_pretrained``.

The layout is what ``sat.training.model_io`` reads (and what the published CogVLM
checkpoints use)::

    <dir>/model_config.json                 architecture; from_pretrained reads it
    <dir>/latest                            "1": which iteration to load (or "release")
    <dir>/1/mp_rank_00_model_states.pt      {'module': state_dict}, model-parallel rank 0

Loading follows the article's section 3 exactly::

    CogVLMModel.from_pretrained(dir, args)  ->  from_pretrained_base
        -> update_args_with_file(args, dir/model_config.json) -> overwrite_args_by_dict
        -> get_model(args, CogVLMModel) -> load_checkpoint(model, args, dir)

Two things SAT does not do, which we add in front of it:

* **A strict check.** SAT's ``load_checkpoint`` calls ``load_state_dict(strict=False)``: it
  prints unexpected keys and carries on, raises a bare ``ValueError`` listing *all* missing
  keys (in inference mode), and a shape mismatch surfaces as torch's ``RuntimeError``; a
  missing ``latest`` is a ``ValueError`` and a non-numeric one calls ``exit()``. We check the
  folder and the state dict first and raise :class:`CheckpointError` with one readable
  message naming the file and what was expected.
* **Tiny checkpoints on demand.** A shipped tiny config has no weights; :func:`load_model`
  generates them from a seed once, caches them, and then loads them through the same real
  SAT path as a downloaded checkpoint.

All user files are read with ``torch.load(..., weights_only=True)``: a checkpoint is data, and
must not be able to run code. SAT's own ``torch.load`` relies on torch's default (which is
``weights_only=True`` in current torch); our check runs first, so a pickle that the safe
loader refuses never reaches SAT.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import torch
from sat.training.model_io import extract_model_specific_args_to_dump

from ..errors import UserError
from .build import DEFAULT_SEED, DEVICES, build_model, environment_args, placement
from .config import CONFIG_FILE, ModelConfig, load_config
from .config_types import check_config_types
from .memory import check_fits, count_parameters, rough_parameters
from .model import CogVLMModel

__all__ = [
    "CheckpointError",
    "cache_root",
    "checkpoint_file",
    "generated_checkpoint",
    "load_model",
    "loader_args",
    "read_state_dict",
    "save_checkpoint",
    "verify_state_dict",
]

TRACKER_FILE = "latest"  # SAT's get_checkpoint_tracker_filename
# SAT names the file after the model-parallel rank; this toolkit runs one process (rank 0).
WEIGHTS_FILE = "mp_rank_00_model_states.pt"
# Bump when what we write changes, so old cache entries are not reused.
FORMAT_VERSION = 1
# Random weights are generated only for models up to this size (400 MB in fp32); the full
# 17.6B model would be 70 GB of noise.
GENERATE_LIMIT = 100_000_000
# How many names a mismatch message lists per category before "... and N more".
MAX_LISTED = 8
# The modules whose code decides the generated weights (their bytes go into the cache key).
_WEIGHT_CODE = ("model.py", "mixins.py", "build.py")


class CheckpointError(UserError):
    """A checkpoint folder or weights file that cannot be loaded; the message names the file."""


# ---------------------------------------------------------------------------------------------
# Saving


def _config_text(model: torch.nn.Module, args_or_config: argparse.Namespace | ModelConfig | str | Path) -> str:
    """The ``model_config.json`` to write beside the weights."""
    if isinstance(args_or_config, argparse.Namespace):
        # What SAT's own save_checkpoint writes: model class, architecture, model-specific args.
        return json.dumps(extract_model_specific_args_to_dump(args_or_config, model), indent=4) + "\n"
    config = args_or_config if isinstance(args_or_config, ModelConfig) else load_config(args_or_config)
    return config.path.read_text(encoding="utf-8")  # a byte-for-byte copy keeps its comments


def save_checkpoint(model: torch.nn.Module, args_or_config: argparse.Namespace | ModelConfig | str | Path,
                    directory: str | Path, iteration: int = 1) -> Path:
    """Write ``model`` in SAT's checkpoint layout to ``directory`` (which must not exist yet).

    ``args_or_config`` gives the ``model_config.json``: a config (copied as is) or the build's
    Namespace (dumped the way SAT's ``save_checkpoint`` does). The weights file holds
    ``{'module': {name: tensor}}`` and nothing else (no Namespaces, no RNG state), so it loads
    with ``torch.load(..., weights_only=True)``; SAT's inference loader only reads ``module``.

    Everything is written to a temporary folder beside ``directory`` and renamed into place,
    so a failure (or a concurrent writer) never leaves a half-written checkpoint. Raises
    ``FileExistsError`` if ``directory`` already holds something.
    """
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration <= 0:
        raise ValueError(f"iteration {iteration!r}: expected a positive integer (SAT's 'latest' holds it)")
    state = model.state_dict()
    on_meta = [name for name, tensor in state.items() if tensor.is_meta]
    if on_meta:
        raise ValueError(f"cannot save a model built on the meta device (no values): {on_meta[0]}, ...")
    config_text = _config_text(model, args_or_config)

    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"{directory}: already exists; refusing to overwrite a checkpoint")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / str(iteration)).mkdir(parents=True)
        (tmp / CONFIG_FILE).write_text(config_text, encoding="utf-8")
        load_config(tmp)  # what we wrote must be a config we can read back
        # Plain dict of CPU tensors: no OrderedDict metadata, loadable anywhere.
        module = {name: tensor.detach().cpu() for name, tensor in state.items()}
        with open(tmp / str(iteration) / WEIGHTS_FILE, "wb") as f:
            torch.save({"module": module}, f)
            f.flush()
            os.fsync(f.fileno())
        (tmp / TRACKER_FILE).write_text(str(iteration), encoding="utf-8")
        try:
            os.rename(tmp, directory)  # atomic; fails if someone else filled directory meanwhile
        except OSError as e:
            if directory.exists():
                raise FileExistsError(f"{directory}: already exists; refusing to overwrite a checkpoint") from e
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return directory


# ---------------------------------------------------------------------------------------------
# Reading and checking


def _hint(directory: Path) -> str:
    """Point at the fix when the broken checkpoint is one we generated."""
    try:
        directory.resolve().relative_to(cache_root().resolve())
    except ValueError:
        return ""
    return f" (a generated cache entry: delete {directory} to regenerate it)"


def checkpoint_file(directory: str | Path) -> Path:
    """The weights file SAT will load from ``directory``: ``<latest>/mp_rank_00_model_states.pt``.

    Mirrors SAT's ``get_checkpoint_iteration`` + ``get_checkpoint_name``, with one-line errors.
    """
    directory = Path(directory)
    tracker = directory / TRACKER_FILE
    hint = _hint(directory)
    if not tracker.is_file():
        raise CheckpointError(f"{tracker}: missing; expected a text file holding the iteration to load "
                              f"(e.g. '1'), as SAT's save_checkpoint writes{hint}")
    try:
        text = tracker.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{tracker}: cannot read it ({e.__class__.__name__}); expected a text file "
                              f"holding the iteration to load{hint}") from e
    if text == "release":
        sub = "release"
    else:
        try:
            iteration = int(text)
        except ValueError:
            iteration = 0
        if iteration <= 0:
            raise CheckpointError(f"{tracker}: holds {text[:40]!r}; expected a positive iteration number "
                                  f"(e.g. '1') or 'release'{hint}")
        sub = str(iteration)
    weights = directory / sub / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing; '{TRACKER_FILE}' says iteration {sub!r}, so SAT expects "
                              f"this file{hint}")
    return weights


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``module`` state dict of a SAT weights file, read safely (``weights_only=True``).

    The file is memory-mapped, so checking the keys and shapes of a 35 GB checkpoint reads
    almost nothing; SAT's loader then reads the values once.
    """
    path = Path(path)
    hint = _hint(path.parent.parent)
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            sd = torch.load(path, map_location="cpu", weights_only=True)  # legacy (pre-zip) format
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower():
            raise CheckpointError(f"{path}: holds pickled Python objects that torch.load(weights_only=True) "
                                  f"refuses to run; expected only tensors, numbers and strings{hint}") from e
        raise CheckpointError(f"{path}: not a PyTorch weights file ({_first_line(e)}); expected a file "
                              f"written by torch.save (truncated or corrupt?){hint}") from e
    except Exception as e:  # torch raises RuntimeError, EOFError, ValueError... for damaged files
        raise CheckpointError(f"{path}: not a readable PyTorch weights file ({e.__class__.__name__}: "
                              f"{_first_line(e)}); expected a file written by torch.save (truncated or "
                              f"corrupt?){hint}") from e
    if not isinstance(sd, Mapping) or not isinstance(sd.get("module"), Mapping):
        found = sorted(map(str, sd)) if isinstance(sd, Mapping) else type(sd).__name__
        raise CheckpointError(f"{path}: expected {{'module': state_dict}} as SAT saves it, found {found}{hint}")
    module = sd["module"]
    bad = [str(k) for k, v in module.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: 'module' should map parameter names to tensors; "
                              f"{len(bad)} entries do not, e.g. {bad[0]!r}{hint}")
    return dict(module)


def _first_line(e: BaseException) -> str:
    """The gist of a library error: its first sentence (torch appends paragraphs of advice)."""
    lines = str(e).strip().splitlines()
    return lines[0].split(". ")[0].rstrip(".")[:160] if lines else e.__class__.__name__


def _listing(title: str, items: list[str]) -> list[str]:
    shown = [f"    {item}" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"    ... and {len(items) - MAX_LISTED} more")
    return [f"  {title}:"] + shown


def verify_state_dict(checkpoint: Mapping[str, torch.Size | tuple[int, ...]],
                      model: Mapping[str, torch.Size | tuple[int, ...]], *, where: str) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint`` has exactly ``model``'s keys and shapes.

    Both map parameter names to shapes. The message lists missing keys, unexpected keys and
    shape mismatches (``name: checkpoint [..] vs model [..]``), at most ``MAX_LISTED`` each.
    """
    missing = [k for k in model if k not in checkpoint]
    unexpected = [k for k in checkpoint if k not in model]
    wrong = [f"{k}: checkpoint {list(checkpoint[k])} vs model {list(model[k])}"
             for k in model if k in checkpoint and tuple(checkpoint[k]) != tuple(model[k])]
    if not (missing or unexpected or wrong):
        return
    lines = [f"{where}: weights do not fit the model: {len(missing)} missing, {len(unexpected)} unexpected, "
             f"{len(wrong)} with the wrong shape"]
    if missing:
        lines += _listing("missing (in the model, not in the checkpoint)", missing)
    if unexpected:
        lines += _listing("unexpected (in the checkpoint, not in the model)", unexpected)
    if wrong:
        lines += _listing("wrong shape", wrong)
    raise CheckpointError("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Generated tiny checkpoints


def cache_root() -> Path:
    """``$COGTRACE_CACHE``, else ``$XDG_CACHE_HOME/cogvlm-tracer``, else ``~/.cache/cogvlm-tracer``."""
    if os.environ.get("COGTRACE_CACHE"):
        return Path(os.environ["COGTRACE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cogvlm-tracer"


def _cache_dir(config: ModelConfig, seed: int) -> Path:
    """``<cache>/checkpoints/<name>-<hash>``: the hash covers everything the weights depend on
    (the config, the seed, our format, and the code that draws them: ours, SAT's, torch's), so
    an entry is never reused for weights that a fresh build would no longer produce."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    for part in (f"format={FORMAT_VERSION}", f"seed={seed}", f"sat={version('SwissArmyTransformer')}",
                 f"torch={torch.__version__}"):
        digest.update(part.encode() + b"\0")
    for source in _WEIGHT_CODE:
        digest.update((Path(__file__).parent / source).read_bytes())
    digest.update(config.path.read_bytes())
    return cache_root() / "checkpoints" / f"{config.name}-{digest.hexdigest()[:12]}"


def _sweep_stale(parent: Path, max_age_s: float = 3600.0) -> None:
    """Remove temporary folders left by a generation that was killed (a live one takes seconds)."""
    now = time.time()
    for tmp in parent.glob(".*.tmp-*"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > max_age_s:
                shutil.rmtree(tmp, ignore_errors=True)


def _generate(config: ModelConfig, seed: int, target: Path) -> None:
    """Build the model from the seed on CPU and save it to ``target``."""
    result = build_model(config, device="cpu", seed=seed)
    save_checkpoint(result.model, config, target)


def generated_checkpoint(config: ModelConfig, seed: int = DEFAULT_SEED) -> Path:
    """A checkpoint of ``config`` with weights drawn from ``seed``: made once, then reused.

    Safe when two processes race: each writes its own temporary folder and renames it into
    place; the loser finds the folder taken and uses the winner's (identical) checkpoint.
    """
    target = _cache_dir(config, seed)
    if not (target / TRACKER_FILE).is_file():
        if target.parent.is_dir():
            _sweep_stale(target.parent)
        try:
            _generate(config, seed, target)
        except FileExistsError:
            pass  # another process (or an earlier, broken run) got there first: load checks it
        except OSError as e:
            raise CheckpointError(f"{target}: cannot write the generated tiny checkpoint ({e.__class__.__name__}: "
                                  f"{e.strerror or e}); expected a writable cache folder (set COGTRACE_CACHE)") from e
    return target


# ---------------------------------------------------------------------------------------------
# Loading


def loader_args(*, device: str = "cpu", seed: int = DEFAULT_SEED, skip_init: bool = False) -> argparse.Namespace:
    """The Namespace handed to ``from_pretrained``: SAT defaults plus environment settings.

    Unlike :func:`tracer.cogvlm.build.inference_args` it does not read ``model_config.json``:
    ``from_pretrained_base`` does that itself (``update_args_with_file`` replaces every key the
    file names and keeps the rest, i.e. the settings below).
    """
    return environment_args(CogVLMModel.get_args(), device=device, seed=seed, skip_init=skip_init)


def _looks_like_checkpoint(directory: Path) -> bool:
    return (directory / TRACKER_FILE).exists() or any(directory.glob("*/mp_rank_*_model_states.pt"))


def _checkpoint_shapes(directory: Path) -> tuple[Path, dict[str, torch.Size]]:
    weights = checkpoint_file(directory)
    return weights, {name: tensor.shape for name, tensor in read_state_dict(weights).items()}


def _untraced() -> contextlib.AbstractContextManager[None]:
    """Keep our preparation (the meta build for the check, generating a tiny checkpoint) out
    of an active ``tracer.trace()`` recording: the trace then shows the article's flow only,
    ``from_pretrained`` -> ... -> ``load_checkpoint``, the same on a cache miss and a hit."""
    from ..session import active_recorder

    recorder = active_recorder()
    return recorder.suppressed() if recorder is not None else contextlib.nullcontext()


def _expected_shapes(config: ModelConfig, seed: int) -> dict[str, torch.Size]:
    """Names and shapes of the model this config builds: a meta build, ~1 s even at 17.6B."""
    with _untraced():
        model = build_model(config, device="meta", seed=seed).model
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def load_model(spec: str | Path | ModelConfig, *, device: str = "cpu", build_only: bool = False,
               seed: int = DEFAULT_SEED) -> tuple[CogVLMModel, argparse.Namespace]:
    """Load CogVLM from a checkpoint folder or a config, through ``CogVLMModel.from_pretrained``.

    ``spec`` is a checkpoint folder (``model_config.json`` + ``latest`` + weights), or a config
    without weights (a folder, its ``model_config.json``, or a shipped name such as
    ``tiny/cogvlm-grounding-generalist``): a small model then gets weights generated from
    ``seed`` and cached (see :func:`generated_checkpoint`), so the real load path still runs.

    ``build_only=True`` builds from the config and skips ``load_checkpoint``, as in the
    article; the weights are then initialised from ``seed`` (not left as uninitialised memory).
    When loading, the build uses ``skip_init=True`` like upstream's ``cli_demo.py``: the check
    before the load guarantees that every parameter is overwritten.

    The check reads the weights file once, memory-mapped (keys and shapes only), and compares
    it with a meta-device build of the same config; SAT's ``load_checkpoint`` then does the one
    real read. Returns ``(model, args)`` as ``from_pretrained`` does, with the model in eval mode.
    """
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: expected one of {list(DEVICES)}")
    config = spec if isinstance(spec, ModelConfig) else load_config(spec)
    check_config_types(config)  # SAT's update_args_with_file copies values in unchecked
    if build_only:
        if device == "cpu":
            check_fits(config)  # before any build: a model that cannot fit is refused in a second
        return _from_pretrained(config.directory, device=device, seed=seed, build_only=True)
    if device == "meta":
        raise CheckpointError(f"{config.directory}: device 'meta' holds no values, so weights cannot be loaded "
                              f"into it; expected build_only=True for a meta build")
    if _looks_like_checkpoint(config.directory):
        directory = config.directory
        weights, shapes = _checkpoint_shapes(directory)  # a broken folder fails before any build
        expected = _expected_shapes(config, seed)
    else:
        # From small meta builds (memory.py): a config of 1e9 layers is refused here in a second,
        # where a meta build of the whole model would take hours.
        count = rough_parameters(config)
        if count > GENERATE_LIMIT // 2:
            count = count_parameters(config)
        if count > GENERATE_LIMIT:
            raise CheckpointError(f"{config.directory}: no weights here (no '{TRACKER_FILE}' file), and at "
                                  f"{count:,} weights the model is too big to generate random ones (limit "
                                  f"{GENERATE_LIMIT:,}); expected a downloaded checkpoint folder, or build_only=True")
        expected = _expected_shapes(config, seed)
        with _untraced():
            directory = generated_checkpoint(config, seed)
        weights, shapes = _checkpoint_shapes(directory)
    verify_state_dict(shapes, expected, where=str(weights))
    check_fits(config)  # the checkpoint matches the config: can this machine hold it?
    model, args = _from_pretrained(directory, device=device, seed=seed, build_only=False)
    check_finite(model, weights)
    return model, args


def check_finite(model: torch.nn.Module, weights: Path) -> None:
    """Refuse weights holding NaN or Inf, naming the first such key: they would surface much
    later as SAT's ``nan in logits`` in the middle of generation."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            kind = "NaN" if bool(torch.isnan(tensor).any()) else "Inf"
            raise CheckpointError(f"{weights}: weight '{name}' holds {kind} values; expected finite numbers "
                                  f"(a damaged or diverged checkpoint){_hint(weights.parent.parent)}")


def _from_pretrained(directory: Path, *, device: str, seed: int,
                     build_only: bool) -> tuple[CogVLMModel, argparse.Namespace]:
    """SAT's real entry point, with our environment settings; meta builds allocate nothing."""
    args = loader_args(device=device, seed=seed, skip_init=device == "meta" or not build_only)
    with placement(device, seed):
        model, args = CogVLMModel.from_pretrained(str(directory), args=args, build_only=build_only)
    return model.eval(), args
