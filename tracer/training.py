"""Recording of SAT's training path (category ``training``): what a fine-tuning run did, step by step.

Installed by :func:`tracer.trace` when ``training`` is among its categories; every patch is a
plain attribute swap on SAT's and DeepSpeed's classes and modules, undone when the block exits.
Nothing is recorded outside SAT's training path, and nothing computed there changes (the
wrappers only read tensors, under ``torch.no_grad()``). Events (``data`` keys in
``docs/trace-schema.md``):

* ``LoraMixin.reinit`` — the Linear layers LoRA swapped, their new class and factor shapes,
  and what the re-initialisation did (``matrix_B`` is zero, so the swapped model computes what
  it did before until the first optimizer step);
* ``trainable_parameters`` — after ``disable_untrainable_params``: each trainable parameter
  with its shape, size and why it trains (the fine-tuning rule's clause), and the frozen total;
* ``deepspeed.initialize`` — the engine: ZeRO stage, world size, backend, optimizer, precision;
* ``train_step`` — one iteration (loss, lr) with children ``forward`` (input and logits
  shapes), ``backward`` (gradient shapes and norms per parameter group) and ``optimizer.step``
  (lr per group, optimizer state sizes, global gradient norm);
* ``save_checkpoint`` — the files written and their sizes;
* ``LoraMixin.merge_lora`` — the layers folded back (``W += scaling * B @ A``), with the size of
  each update.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .schema import SourceLocation
from .sink import Recorder

__all__ = ["install", "parameter_group"]


def parameter_group(name: str) -> str:
    """The group a parameter is reported in: which tower, and LoRA factor or base weight."""
    tower = "vision (EVA)" if ".vit_model." in name or name.startswith("mixins.eva.") else "language"
    if ".matrix_A." in name or name.endswith("matrix_A"):
        return f"{tower} LoRA A"
    if ".matrix_B." in name or name.endswith("matrix_B"):
        return f"{tower} LoRA B"
    return f"{tower} weights"


def _caller(depth: int = 2) -> SourceLocation | None:
    try:
        return SourceLocation.of_frame(sys._getframe(depth))
    except ValueError:
        return None


def _linear_classes(model: Any) -> dict[str, str]:
    return {path: type(m).__name__ for path, m in model.named_modules()}


def _why(model: Any) -> Callable[[str], str]:
    """The trainable rule's explanation when the model has one (tracer.finetune.model)."""
    from .finetune.model import FineTuneTrainCogVLMModel, why_trainable

    if isinstance(model, FineTuneTrainCogVLMModel):
        args = model.args
        use_lora, full = bool(getattr(args, "use_lora", False)), bool(getattr(args, "full_finetune", False))
        return lambda name: why_trainable(name, use_lora, full) or "requires_grad (set outside the rule)"
    return lambda name: "requires_grad"


class _Patches:
    def __init__(self) -> None:
        self.saved: list[tuple[Any, str, Any]] = []

    def swap(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        self.saved.append((owner, name, original))
        setattr(owner, name, make(original))

    def undo(self) -> None:
        while self.saved:
            owner, name, original = self.saved.pop()
            setattr(owner, name, original)


class _Training:
    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder
        self.patches = _Patches()

    # -- helpers ----------------------------------------------------------------------
    def _event(self, name: str, data: dict[str, Any], depth: int = 3) -> tuple[int, dict[str, Any]] | None:
        if not self.rec.recording():
            return None
        token, record = self.rec.begin("training", name, data, source=_caller(depth))
        return token, (record.data if record is not None else {})

    def _run(self, name: str, data: dict[str, Any], call: Callable[[], Any],
             after: Callable[[Any, dict[str, Any]], None] | None = None) -> Any:
        opened = self._event(name, data, depth=4)
        if opened is None:
            return call()
        token, fields = opened
        try:
            result = call()
        except BaseException as e:
            self.rec.end(token, f"{type(e).__name__}: {e}")
            raise
        if after is not None:
            import torch

            with torch.no_grad():
                after(result, fields)
        self.rec.end(token)
        return result

    # -- patches ----------------------------------------------------------------------
    def install(self) -> None:
        import sat.training.deepspeed_training as training
        from deepspeed.runtime.engine import DeepSpeedEngine
        from sat.model.finetune.lora2 import LoraMixin

        self.patches.swap(LoraMixin, "reinit", self._reinit)
        self.patches.swap(LoraMixin, "merge_lora", self._merge)
        self.patches.swap(training, "setup_model_untrainable_params_and_optimizer", self._setup)
        self.patches.swap(training, "train_step", self._train_step)
        self.patches.swap(training, "save_checkpoint", self._save)
        self.patches.swap(DeepSpeedEngine, "forward", self._forward)
        self.patches.swap(DeepSpeedEngine, "backward", self._backward)
        self.patches.swap(DeepSpeedEngine, "step", self._step)

    def _reinit(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self

        def reinit(mixin: Any, parent_model: Any = None, *args: Any, **kwargs: Any) -> Any:
            before = _linear_classes(parent_model) if parent_model is not None else {}
            data = {"owner": type(parent_model).__name__, "rank": mixin.r, "lora_alpha": mixin.lora_alpha,
                    "scaling": mixin.lora_alpha / mixin.r if mixin.r else None,
                    "layer_range": list(mixin.layer_range)}

            def after(_: Any, fields: dict[str, Any]) -> None:
                swapped = []
                for path, module in parent_model.named_modules():
                    if hasattr(module, "matrix_A") and before.get(path) != type(module).__name__:
                        swapped.append({
                            "path": path, "from": before.get(path, "?"), "to": type(module).__name__,
                            "original": type(module.original).__name__,
                            "A": [list(p.shape) for p in module.matrix_A],
                            "B": [list(p.shape) for p in module.matrix_B],
                            "B_is_zero": all(bool((p == 0).all()) for p in module.matrix_B),
                            "parameters": sum(p.numel() for p in module.matrix_A) + sum(p.numel() for p in module.matrix_B),
                        })
                fields["swapped"] = swapped
                fields["added_parameters"] = sum(s["parameters"] for s in swapped)
                fields["reinit"] = ("matrix_A: kaiming_uniform_(a=sqrt(5)); matrix_B: zeros_ -> scaling * B @ A = 0, "
                                    "so each swapped layer computes exactly what the original Linear did until "
                                    "the first optimizer step")

            return tracer._run("LoraMixin.reinit", data, lambda: original(mixin, parent_model, *args, **kwargs), after)

        return reinit

    def _merge(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self

        def merge_lora(mixin: Any, *args: Any, **kwargs: Any) -> Any:
            model = mixin.transformer  # a mixin reaches its model's transformer
            updates = []
            import torch

            with torch.no_grad():
                for path, module in model.named_modules():
                    if hasattr(module, "matrix_A"):
                        delta = sum(float((b @ a).square().sum()) for a, b in zip(module.matrix_A, module.matrix_B,
                                                                                   strict=True))
                        updates.append({"path": f"transformer.{path}" if path else "transformer",
                                        "update_norm": math.sqrt(delta) * module.scaling})

            def after(_: Any, fields: dict[str, Any]) -> None:
                fields["merged"] = updates
                fields["left"] = sum(1 for _, m in model.named_modules() if hasattr(m, "matrix_A"))

            return tracer._run("LoraMixin.merge_lora", {"layer_range": list(mixin.layer_range)},
                               lambda: original(mixin, *args, **kwargs), after)

        return merge_lora

    def _setup(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self

        def setup(args: Any, model: Any, *rest: Any, **kwargs: Any) -> Any:
            opened = tracer._event("deepspeed.initialize", {}, depth=2)
            result = original(args, model, *rest, **kwargs)
            engine, optimizer = result
            if opened is not None:
                token, fields = opened
                import torch.distributed as dist

                inner = getattr(optimizer, "optimizer", optimizer)
                fields.update({
                    "zero_stage": engine.zero_optimization_stage(), "world_size": dist.get_world_size(),
                    "backend": dist.get_backend(), "optimizer": type(optimizer).__name__,
                    "base_optimizer": type(inner).__name__, "fp16": bool(engine.fp16_enabled()),
                    "bf16": bool(engine.bfloat16_enabled()), "micro_batch": engine.train_micro_batch_size_per_gpu(),
                    "gradient_accumulation": engine.gradient_accumulation_steps(),
                    "gradient_clipping": engine.gradient_clipping(), "device": str(engine.device),
                })
                tracer.rec.end(token)
                why = _why(model)
                rows = [{"name": n, "shape": list(p.shape), "count": p.numel(), "why": why(n),
                         "group": parameter_group(n)} for n, p in model.named_parameters() if p.requires_grad]
                total = sum(p.numel() for p in model.parameters())
                table = tracer._event("trainable_parameters", {
                    "rows": rows, "trainable": sum(r["count"] for r in rows), "total": total,
                    "frozen": total - sum(r["count"] for r in rows), "model_class": type(model).__name__}, depth=2)
                if table is not None:
                    tracer.rec.end(table[0])
            return result

        return setup

    def _train_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self

        def train_step(data_iterator: Any, model: Any, optimizer: Any, lr_scheduler: Any, args: Any,
                       *rest: Any, **kwargs: Any) -> Any:
            def after(result: Any, fields: dict[str, Any]) -> None:
                loss, skipped, _ = result
                fields.update({"loss": float(loss), "skipped": int(skipped),
                               "lr": float(optimizer.param_groups[0]["lr"])})

            return tracer._run("train_step", {"iteration": int(args.iteration) + 1},
                               lambda: original(data_iterator, model, optimizer, lr_scheduler, args, *rest, **kwargs),
                               after)

        return train_step

    def _forward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self

        def forward(engine: Any, *args: Any, **kwargs: Any) -> Any:
            import torch

            inputs = {k: list(v.shape) for k, v in kwargs.items() if isinstance(v, torch.Tensor)}

            def after(result: Any, fields: dict[str, Any]) -> None:
                first = result[0] if isinstance(result, (tuple, list)) else result
                fields["output"] = list(first.shape) if isinstance(first, torch.Tensor) else None

            return tracer._run("forward", {"inputs": inputs, "training": bool(engine.training)},
                               lambda: original(engine, *args, **kwargs), after)

        return forward

    def _backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self

        def backward(engine: Any, loss: Any, *args: Any, **kwargs: Any) -> Any:
            # Gradients are read as autograd produces them (a read-only tensor hook per trainable
            # parameter, removed right after): ZeRO moves them into its own buffers and clears
            # param.grad before backward returns, so they cannot be read afterwards.
            groups: dict[str, dict[str, Any]] = {}
            handles = []
            for name, param in engine.module.named_parameters():
                if not param.requires_grad:
                    continue
                group = groups.setdefault(parameter_group(name), {"parameters": 0, "with_grad": 0,
                                                                  "shapes": [], "norm_sq": 0.0})
                group["parameters"] += 1

                def seen(grad: Any, group: dict[str, Any] = group) -> None:
                    group["with_grad"] += 1
                    group["norm_sq"] += float(grad.detach().float().square().sum())
                    if len(group["shapes"]) < 8:
                        group["shapes"].append(list(grad.shape))

                handles.append(param.register_hook(seen))

            def after(_: Any, fields: dict[str, Any]) -> None:
                for group in groups.values():
                    group["norm"] = math.sqrt(group.pop("norm_sq"))
                fields["groups"] = groups
                fields["grad_norm"] = math.sqrt(sum(g["norm"] ** 2 for g in groups.values()))

            try:
                return tracer._run("backward", {"loss": float(loss.detach())},
                                   lambda: original(engine, loss, *args, **kwargs), after)
            finally:
                for handle in handles:
                    handle.remove()

        return backward

    def _step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self

        def step(engine: Any, *args: Any, **kwargs: Any) -> Any:
            def after(_: Any, fields: dict[str, Any]) -> None:
                optimizer = engine.optimizer
                inner = getattr(optimizer, "optimizer", optimizer)
                state_tensors, state_numel = 0, 0
                for state in getattr(inner, "state", {}).values():
                    for value in state.values():
                        if hasattr(value, "numel") and value.dim() > 0:
                            state_tensors += 1
                            state_numel += value.numel()
                fields.update({
                    "lr": [float(g["lr"]) for g in optimizer.param_groups],
                    "groups": len(optimizer.param_groups),
                    "state_tensors": state_tensors, "state_numel": state_numel,
                    "state_bytes": state_numel * 4,
                    "grad_norm": None if engine.get_global_grad_norm() is None else float(engine.get_global_grad_norm()),
                    "global_steps": int(engine.global_steps),
                })

            return tracer._run("optimizer.step", {}, lambda: original(engine, *args, **kwargs), after)

        return step

    def _save(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self

        def save_checkpoint(iteration: int, model: Any, optimizer: Any, lr_scheduler: Any, args: Any) -> Any:
            def after(_: Any, fields: dict[str, Any]) -> None:
                root = Path(args.save)
                files: list[dict[str, Any]] = []
                for path in sorted(_walk(root)):
                    files.append({"path": str(path.relative_to(root)), "bytes": path.stat().st_size})
                fields.update({"directory": str(root), "files": files, "bytes": sum(f["bytes"] for f in files)})

            return tracer._run("save_checkpoint", {"iteration": int(iteration)},
                               lambda: original(iteration, model, optimizer, lr_scheduler, args), after)

        return save_checkpoint


def _walk(root: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            yield Path(folder) / name


def install(recorder: Recorder) -> Callable[[], None]:
    """Patch SAT's and DeepSpeed's training path for ``recorder``; returns the undo function."""
    training = _Training(recorder)
    try:
        training.install()
    except BaseException:
        training.patches.undo()
        raise
    return training.patches.undo
