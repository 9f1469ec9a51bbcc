"""Views of a fine-tuning trace (category ``training``): the steps table, the trainable-parameter
table, LoRA swaps and merges, checkpoints, and the loss curve as a PNG (Pillow, no plotting
library). Standard library and Pillow only, like every renderer: no torch, no SAT."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw

from ..schema import Event, Trace

__all__ = ["has_training", "loss_curve", "loss_png", "training_text"]


def has_training(trace: Trace) -> bool:
    return any(True for _ in trace.of("training"))


def _children(trace: Trace, parent: Event) -> list[Event]:
    return [e for e in trace.events if e.parent == parent.id and e.category == "training"]


def loss_curve(trace: Trace) -> list[tuple[int, float, float]]:
    """(iteration, loss, lr) of every recorded ``train_step``."""
    return [(int(e.data.get("iteration", 0)), float(e.data["loss"]), float(e.data.get("lr", 0.0)))
            for e in trace.of("training") if e.name == "train_step" and "loss" in e.data]


def _fmt(n: float) -> str:
    return f"{n:.3e}" if n and (abs(n) < 1e-3 or abs(n) >= 1e4) else f"{n:.4f}"


def _section(title: str) -> list[str]:
    return ["", title, "-" * len(title)]


def loss_curve_png(trace: Trace) -> bytes:
    """The loss curve of a fine-tuning trace as a PNG (the ``loss`` view)."""
    return loss_png(loss_curve(trace))


def training_text(trace: Trace) -> str:
    """Everything the training events say, as plain text tables."""
    lines: list[str] = ["Fine-tuning trace"]
    for event in trace.of("training"):
        if event.name == "deepspeed.initialize":
            d = event.data
            lines += _section("DeepSpeed engine")
            lines.append(f"ZeRO stage {d.get('zero_stage')}, world size {d.get('world_size')}, backend "
                         f"{d.get('backend')}, device {d.get('device')}; optimizer {d.get('optimizer')} around "
                         f"{d.get('base_optimizer')}; fp16 {d.get('fp16')}, bf16 {d.get('bf16')}; micro batch "
                         f"{d.get('micro_batch')} x accumulation {d.get('gradient_accumulation')}, clipping "
                         f"{d.get('gradient_clipping')}")
        elif event.name == "LoraMixin.reinit":
            d = event.data
            lines += _section(f"LoRA add_mixin on {d.get('owner')} (rank {d.get('rank')}, alpha {d.get('lora_alpha')}, "
                              f"layers {d.get('layer_range')})")
            for s in d.get("swapped", []):
                lines.append(f"  {s['path']:<42} {s['from']} -> {s['to']}({s['original']})  A {s['A']}  B {s['B']}  "
                             f"B zero: {s['B_is_zero']}")
            lines.append(f"  +{d.get('added_parameters', 0):,} parameters. reinit: {d.get('reinit', '')}")
        elif event.name == "trainable_parameters":
            d = event.data
            lines += _section(f"Trainable parameters: {d.get('trainable', 0):,} of {d.get('total', 0):,} "
                              f"({d.get('frozen', 0):,} frozen)")
            lines.append(f"  {'name':<64} {'shape':<14} {'count':>8}  why")
            for row in d.get("rows", []):
                lines.append(f"  {row['name']:<64} {str(tuple(row['shape'])):<14} {row['count']:>8,}  {row['why']}")
        elif event.name == "save_checkpoint":
            d = event.data
            lines += _section(f"save_checkpoint at iteration {d.get('iteration')}: {d.get('directory')}")
            for f in d.get("files", []):
                lines.append(f"  {f['path']:<48} {f['bytes']:>12,} bytes")
        elif event.name == "LoraMixin.merge_lora":
            d = event.data
            lines += _section(f"merge_lora (layers {d.get('layer_range')}): W += scaling * B @ A")
            for m in d.get("merged", []):
                lines.append(f"  {m['path']:<48} |scaling * B @ A| = {_fmt(m['update_norm'])}")
    steps = [e for e in trace.of("training") if e.name == "train_step"]
    if steps:
        lines += _section("Training steps")
        lines.append(f"  {'iter':>5} {'loss':>10} {'lr':>11} {'forward logits':<18} {'grad norm':>10} "
                     f"{'groups with gradients':<40} {'opt. state':>11}")
        for step in steps:
            kids = {e.name: e for e in _children(trace, step)}
            fwd, bwd, opt = kids.get("forward"), kids.get("backward"), kids.get("optimizer.step")
            logits = str(fwd.data.get("output")) if fwd else "-"
            norm = bwd.data.get("grad_norm") if bwd else None
            groups = ", ".join(f"{k} {v['norm']:.2e}" for k, v in (bwd.data.get("groups", {}) if bwd else {}).items()
                               if v.get("with_grad"))
            state = f"{opt.data.get('state_numel', 0):,}" if opt else "-"
            lines.append(f"  {step.data.get('iteration', 0):>5} {_fmt(float(step.data.get('loss', float('nan')))):>10} "
                         f"{_fmt(float(step.data.get('lr', 0.0))):>11} {logits:<18} "
                         f"{'-' if norm is None else _fmt(float(norm)):>10} {groups:<40} {state:>11}")
    return "\n".join(lines) + "\n"


def loss_png(points: Sequence[tuple[int, float, Any]], width: int = 640, height: int = 320,
             title: str = "training loss") -> bytes:
    """A line plot of loss against iteration, with axis ranges written on it."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, width - 20, 30, height - 40
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    draw.text((left, 8), title, fill=(0, 0, 0))
    if points:
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
        def at(x: float, y: float) -> tuple[float, float]:
            return (left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top))
        coords = [at(x, y) for x, y in zip(xs, ys, strict=True)]
        if len(coords) > 1:
            draw.line(coords, fill=(200, 40, 40), width=2)
        for cx, cy in coords if len(coords) <= 50 else ():
            draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=(200, 40, 40))
        draw.text((4, top), f"{y1:.3f}", fill=(0, 0, 0))
        draw.text((4, bottom - 10), f"{y0:.3f}", fill=(0, 0, 0))
        draw.text((left, bottom + 6), f"iteration {x0}", fill=(0, 0, 0))
        draw.text((right - 90, bottom + 6), f"iteration {x1}", fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
