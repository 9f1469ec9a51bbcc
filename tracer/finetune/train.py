"""``finetune()``: upstream's ``finetune_cogvlm_demo.py`` flow on a CPU, through SAT's real
``training_main`` and DeepSpeed (fp32, gloo, ZeRO stage 1)::

    args = get_args(args_list)                                   # SAT: parse, init gloo + DeepSpeed
    model, args = FineTuneTrainCogVLMModel.from_pretrained(ckpt, args)
    model.add_mixin('lora', LoraMixin(L, rank, layer_range), reinit=True)          # LoRA only
    model.get_mixin('eva').vit_model.add_mixin('lora', LoraMixin(E, rank, ...), reinit=True)
    model = training_main(args, model_cls=model, forward_step_function=forward_step,
                          create_dataset_function=..., collate_fn=...)   # disable_untrainable_params,
                                                                 # deepspeed.initialize, train, save
    model.get_mixin('lora').merge_lora(); ...                    # LoRA only: fold BA into W
    save_checkpoint(...)                                         # OUT/export: weights only, SAT layout

Inputs are checked before anything is built (one line each, nothing written): the data folders,
the LoRA rank and layer range against the model, and the DeepSpeed config against what a CPU
can run. SAT writes its own checkpoints (DeepSpeed's layout, with the optimizer state) under
``OUT/checkpoints/<experiment>``; ``OUT/export`` is the merged model that ``cogtrace chat``
loads. Run it as one process, or under ``torchrun --nproc_per_node N`` for data parallelism
(each rank reads its share of the batches; gloo all-reduces the gradients).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..cogvlm.config import ModelConfig, load_config
from ..errors import UserError

__all__ = ["DEFAULT_DEEPSPEED_CONFIG", "FinetuneError", "FinetuneResult", "check_deepspeed_config",
           "check_inputs", "check_layer_range", "finetune"]

DEFAULT_DEEPSPEED_CONFIG = Path(__file__).parent / "configs" / "deepspeed_cpu.json"
# Optimizers DeepSpeed runs as CUDA kernels (or as a CPU extension built on first use); the
# torch implementations are chosen with "torch_adam": true for Adam/AdamW.
_CUDA_OPTIMIZERS = ("fusedadam", "onebitadam", "zerooneadam", "onebitlamb", "lamb", "adagrad", "muadam", "muadamw")


class FinetuneError(UserError):
    """A fine-tuning input that cannot work; the message is one line naming it."""


@dataclass
class FinetuneResult:
    save_dir: Path | None  # SAT's checkpoint folder (DeepSpeed layout)
    export_dir: Path  # weights-only SAT layout, loadable by cogtrace chat
    losses: list[float] = field(default_factory=list)
    trainable: int = 0


def check_deepspeed_config(path: str | Path) -> dict[str, Any]:
    """The DeepSpeed JSON, refused in one line if it asks for what a CPU cannot do."""
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FinetuneError(f"--deepspeed-config {path}: cannot read it ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise FinetuneError(f"--deepspeed-config {path}: not JSON ({e})") from e
    if not isinstance(config, dict):
        raise FinetuneError(f"--deepspeed-config {path}: expected a JSON object")
    for precision in ("fp16", "bf16"):
        section = config.get(precision, {})
        if isinstance(section, dict) and section.get("enabled"):
            raise FinetuneError(f"--deepspeed-config {path}: '{precision}.enabled' is true; a CPU trains in fp32 "
                                f"here (expected false: DeepSpeed's {precision} loss scaling and kernels need CUDA)")
    optimizer = config.get("optimizer", {})
    kind = str(optimizer.get("type", "")).lower() if isinstance(optimizer, dict) else ""
    params = optimizer.get("params", {}) if isinstance(optimizer, dict) else {}
    if kind in _CUDA_OPTIMIZERS or (kind in ("adam", "adamw") and not params.get("torch_adam", False)):
        raise FinetuneError(f"--deepspeed-config {path}: optimizer '{optimizer.get('type')}' "
                            + ("" if kind in _CUDA_OPTIMIZERS else "without \"torch_adam\": true ")
                            + "is DeepSpeed's fused CUDA kernel; expected \"type\": \"AdamW\" with "
                              "\"params\": {\"torch_adam\": true} on a CPU")
    zero = config.get("zero_optimization", {})
    stage = zero.get("stage", 0) if isinstance(zero, dict) else 0
    if stage != 1:
        raise FinetuneError(f"--deepspeed-config {path}: zero_optimization.stage {stage}; expected 1 on a CPU in "
                            f"fp32 (stage 0 hands SAT a bare optimizer its checkpointing cannot save; 2 and 3 "
                            f"partition for GPUs)")
    return config


def check_layer_range(layer_range: list[int] | None, config: ModelConfig) -> None:
    """Upstream applies one ``layer_range`` to both the language model and the EVA tower."""
    if layer_range is None:
        return
    lm, eva = int(config.values["num_layers"]), int(config.eva["num_layers"])
    if not layer_range:
        raise FinetuneError("--layer-range: expected at least one layer index")
    for index in layer_range:
        if not 0 <= index < min(lm, eva):
            raise FinetuneError(f"--layer-range {index}: outside the model (expected 0-{min(lm, eva) - 1}: the "
                                f"language model has {lm} layers and the EVA tower {eva}, and upstream applies "
                                f"the range to both)")


def _checkpoint_dir(config: ModelConfig, seed: int) -> Path:
    from ..cogvlm.checkpoint import _looks_like_checkpoint, generated_checkpoint

    if _looks_like_checkpoint(config.directory):
        return config.directory
    return generated_checkpoint(config, seed)


def _forward_step(data_iterator: Any, model: Any, args: argparse.Namespace, timers: Any) -> tuple[Any, dict[str, Any]]:
    """Upstream's ``forward_step``: fetch a batch, broadcast it in the model-parallel group, loss."""
    import torch
    from sat import mpu

    from .text import answer_loss

    timers("batch generator").start()
    data = next(data_iterator) if data_iterator is not None else None
    tensors = {k: v for k, v in (data or {}).items() if isinstance(v, torch.Tensor)}
    batch: dict[str, Any] = {k: v for k, v in (data or {}).items() if not isinstance(v, torch.Tensor)}
    for dtype in sorted({t.dtype for t in tensors.values()}, key=str):
        keys = sorted(k for k, t in tensors.items() if t.dtype == dtype)
        batch.update(mpu.broadcast_data(keys, tensors, dtype))
    labels = batch.pop("labels")
    batch.pop("context_length", None)
    timers("batch generator").stop()
    logits = model(**batch)[0]
    loss = answer_loss(logits, labels)
    return loss, {"loss": loss.detach()}


def _args_list(data: Path, out: Path, iters: int, seed: int, ds_config: Path, config: ModelConfig,
               lora_rank: int | None, layer_range: list[int] | None, save_interval: int,
               dropout: float | None) -> list[str]:
    args = ["--mode", "finetune", "--train-iters", str(iters), "--train-data", str(data / "train"),
            "--distributed-backend", "gloo", "--no-save-rng", "--deepspeed_config", str(ds_config),
            "--experiment-name", f"finetune-{config.name}", "--save", str(out / "checkpoints"),
            "--summary-dir", str(out),  # SAT's summary writer: in the output folder, not ./runs
            "--save-interval", str(save_interval), "--log-interval", "1", "--split", "1.", "--seed", str(seed),
            "--lr-decay-style", "cosine", "--warmup", "0.02", "--num-workers", "0", "--skip-init",
            "--eval-interval", str(10 ** 9), "--eval-iters", "1", "--eval-batch-size", "1"]
    if (data / "valid" / "images").is_dir():
        args += ["--valid-data", str(data / "valid")]
    if lora_rank is not None:
        args += ["--use_lora", "--lora_rank", str(lora_rank)]
    else:
        args += ["--full_finetune"]
    if layer_range is not None:
        args += ["--layer_range", *map(str, layer_range)]
    if dropout is not None:  # the language model's; SAT's default is 0.1 (the EVA tower's is 0)
        args += ["--hidden-dropout", str(dropout), "--attention-dropout", str(dropout)]
    return args


def check_inputs(config_spec: str | Path, data: str | Path, out: str | Path, *, iters: int = 100,
                 lora_rank: int | None = None, layer_range: list[int] | None = None,
                 deepspeed_config: str | Path = DEFAULT_DEEPSPEED_CONFIG, dropout: float | None = None) -> ModelConfig:
    """Every input of :func:`finetune`, checked before anything heavy is imported or written."""
    from .data import load_split

    config = load_config(config_spec)
    data, out = Path(data), Path(out)
    if iters <= 0:
        raise FinetuneError(f"--iters {iters}: expected a positive integer")
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise FinetuneError(f"--dropout {dropout}: expected a probability in [0, 1)")
    if lora_rank is not None and lora_rank <= 0:
        raise FinetuneError(f"--lora-rank {lora_rank}: expected a positive integer (LoRA's rank r of B @ A)")
    if layer_range is not None and lora_rank is None:
        raise FinetuneError("--layer-range: applies to LoRA only; expected --lora-rank too")
    check_layer_range(layer_range, config)
    check_deepspeed_config(deepspeed_config)
    if not data.is_dir():
        raise FinetuneError(f"--data {data}: no such folder (expected DIR/train/images + DIR/train/labels)")
    load_split(data / "train")  # empty, unreadable or malformed: one line naming the file
    if (data / "valid").exists():
        load_split(data / "valid")
    if os.environ.get("RANK", "0") == "0" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FinetuneError(f"-o {out}: not an empty folder; expected a new or empty one (checkpoints are "
                            f"never overwritten)")
    if not config.values.get("tokenizer_type"):
        raise FinetuneError(f"{config.path}: fine-tuning here needs a tiny config with the shipped tokenizer "
                            f"(tokenizer_type); a full checkpoint needs a GPU and its vicuna tokenizer")
    return config


def finetune(config_spec: str | Path, data: str | Path, out: str | Path, *, iters: int = 100,
             lora_rank: int | None = None, layer_range: list[int] | None = None, seed: int = 1234,
             deepspeed_config: str | Path = DEFAULT_DEEPSPEED_CONFIG, max_length: int = 256,
             save_interval: int | None = None, dropout: float | None = None,
             on_model: Callable[[Any], None] | None = None) -> FinetuneResult:
    """Fine-tune ``config_spec`` on ``data`` (``data/train``, optional ``data/valid``) into ``out``."""
    config = check_inputs(config_spec, data, out, iters=iters, lora_rank=lora_rank, layer_range=layer_range,
                          deepspeed_config=deepspeed_config, dropout=dropout)
    data, out, ds_config = Path(data), Path(out), Path(deepspeed_config)

    from ..cogvlm.checkpoint import cache_root

    # DeepSpeed JIT-builds its shared-memory communication op on first use: into our cache, not
    # ~/.cache/torch_extensions. A single process gets the variables torchrun would have set.
    launch = {"TORCH_EXTENSIONS_DIR": str(cache_root() / "torch_extensions"), "LOCAL_RANK": "0", "RANK": "0",
              "WORLD_SIZE": "1"}
    added = {key: value for key, value in launch.items() if key not in os.environ}
    os.environ.update(added)
    try:
        return _run(config, data, out, iters, lora_rank, layer_range, seed, ds_config, max_length,
                    save_interval or 10 ** 9, dropout, on_model)
    except BaseException:
        if os.environ.get("RANK", "0") == "0" and out.exists() and not (out / "export").exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing half-saved
        raise
    finally:
        for key in added:
            os.environ.pop(key, None)


def _run(config: ModelConfig, data: Path, out: Path, iters: int, lora_rank: int | None,
         layer_range: list[int] | None, seed: int, ds_config: Path, max_length: int, save_interval: int,
         dropout: float | None, on_model: Callable[[Any], None] | None) -> FinetuneResult:
    import torch
    from sat.model.finetune.lora2 import LoraMixin
    from sat.training.deepspeed_training import training_main

    from ..cogvlm.checkpoint import save_checkpoint
    from ..cogvlm.image_processor import get_image_processor
    from ..cogvlm.text_processor import TextProcessor
    from ..cogvlm.tokenizer import choose_version, tokenizer_for_config
    from .cpu import cpu_training, get_training_args
    from .dataset import ItemDataset
    from .model import FineTuneTrainCogVLMModel
    from .text import TrainingTextProcessor, collate

    parser = argparse.ArgumentParser(add_help=False)
    parser = FineTuneTrainCogVLMModel.add_model_specific_args(parser)
    known, rest = parser.parse_known_args(_args_list(data, out, iters, seed, ds_config, config, lora_rank,
                                                     layer_range, save_interval, dropout))
    args = get_training_args(rest)
    args = argparse.Namespace(**vars(args), **vars(known))
    model, args = FineTuneTrainCogVLMModel.from_pretrained(str(_checkpoint_dir(config, seed)), args)
    if lora_rank is not None:
        model.add_mixin("lora", LoraMixin(args.num_layers, lora_rank, layer_range=layer_range), reinit=True)
        eva = model.get_mixin("eva").vit_model
        eva.add_mixin("lora", LoraMixin(args.eva_args["num_layers"], lora_rank, layer_range=layer_range),
                      reinit=True)
    if on_model is not None:
        on_model(model)

    version = choose_version(None, config.values, config.name)
    tokenizer = tokenizer_for_config(config.values, None, version)
    text = TrainingTextProcessor(TextProcessor(tokenizer, max_length, int(config.values["image_length"])), max_length)
    image_processor = get_image_processor(config.eva["image_size"])

    def create_dataset(path: str, _args: argparse.Namespace) -> ItemDataset:
        return ItemDataset(image_processor, text, path)

    losses: list[float] = []

    def forward_step(data_iterator: Any, model_: Any, args_: argparse.Namespace, timers: Any) -> Any:
        loss, metrics = _forward_step(data_iterator, model_, args_, timers)
        if model_.training:
            losses.append(float(loss.detach()))
        return loss, metrics

    with cpu_training():
        engine = training_main(args, model_cls=model, forward_step_function=forward_step,
                               create_dataset_function=create_dataset,
                               collate_fn=partial(collate, pad_id=tokenizer.pad_token_id))
    trained = getattr(engine, "module", engine)
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    if lora_rank is not None:
        trained.get_mixin("lora").merge_lora()
        trained.get_mixin("eva").vit_model.get_mixin("lora").merge_lora()
    trained.eval()
    export = out / "export"
    if torch.distributed.get_rank() == 0:  # data-parallel ranks hold the same weights: one writer
        save_checkpoint(trained, config, export, iteration=iters)
    torch.distributed.barrier()
    return FinetuneResult(Path(args.save) if args.save else None, export, losses, trainable)
