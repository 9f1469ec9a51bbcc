"""The recipe that trains the shipped tiny checkpoint (``make train-tiny``), measured on 2 cores.

What makes a 588k-parameter CogVLM learn grounding on a CPU in minutes, found by measurement:

* 112 px geometry (8 x 8 = 64 image tokens): at 224 px the same model had not learned where
  objects are after 30 minutes (the first digit of x0/y0 stayed at chance);
* 2-d sine-cosine initial vision position embeddings (seeded random ones carry no layout, and
  the model must first discover the grid before it can read positions off it);
* AdamW at 6e-4 (2e-3 stalled or collapsed), batch 16, one torch thread (two threads ran 5-10x
  slower when the other core was busy), dropout off (fresh data every step: nothing to overfit);
* a curriculum (``make train-tiny``): box questions only on single-object scenes first
  (``box_only_steps``; ~100,000 samples before greedy boxes take off), then a second run from that
  checkpoint (``init``) with colour/shape/count/position questions mixed in, box questions kept
  (``box_weight``) so boxes are not forgotten; mixing everything from the start gave boxes too few
  samples (they stalled at ~30 % IoU > 0.5). Scenes of 1-3 objects can join after ``single_steps``.

This is a plain PyTorch loop over the model's real forward (the same loss as upstream's
``forward_step``), not SAT's ``training_main``: at this size DeepSpeed's per-step bookkeeping
would cost more than the step. ``cogtrace finetune`` is the ``training_main`` path.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..cogvlm.build import build_model
from ..cogvlm.checkpoint import save_checkpoint
from ..cogvlm.config import load_config
from ..cogvlm.image_processor import get_image_processor
from ..cogvlm.model import CogVLMModel
from ..cogvlm.text_processor import TextProcessor
from ..cogvlm.tokenizer import choose_version, tokenizer_for_config
from .data import KIND_WEIGHTS, Sample, samples
from .evaluate import Question, Score, evaluate
from .text import TrainingTextProcessor, answer_loss, collate

__all__ = ["TRAINED_CONFIG", "Recipe", "held_out_questions", "sincos_position_embeddings", "train_tiny"]

TRAINED_CONFIG = "tiny/cogvlm-grounding-trained"


@dataclass(frozen=True)
class Recipe:
    steps: int = 12000
    single_steps: int = 6000  # steps on single-object scenes before 1-3 object scenes join in
    multi_share: float = 0.5  # share of 1-3 object scenes after single_steps
    batch: int = 16
    lr: float = 6e-4
    warmup: int = 200
    decay_from: float = 0.75  # cosine decay to 10 % over the last quarter
    weight_decay: float = 0.01
    seed: int = 1234
    eval_every: int = 1000
    eval_questions: int = 40
    box_weight: int = 6  # how often a box question is asked, against colour 2, shape 2, count 1, position 1
    colour_weight: int = 2  # how often a colour question is asked (the vision tower learns colour from these)
    box_only_steps: int = 0  # steps of box questions only (single-object scenes) before the other kinds join
    stop_after: int = 0  # end the run after this many steps (the lr schedule still spans ``steps``); 0 = steps
    init: str = ""  # a checkpoint folder (SAT layout) to continue from; "" = seeded weights


def sincos_position_embeddings(grid: int, width: int, cls_tokens: int = 1) -> torch.Tensor:
    """(cls + grid*grid, width): zeros for the CLS rows, then half the width encodes the row and
    half the column, each as sines and cosines of geometric frequencies (as in MAE / ViT)."""
    if width % 4:
        raise ValueError(f"width {width}: expected a multiple of 4 for 2-d sine-cosine embeddings")
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (w/4,)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                            indexing="ij")
    def encode(pos: torch.Tensor) -> torch.Tensor:
        angle = pos.flatten()[:, None] * omega[None]  # (g*g, w/4)
        return torch.cat([angle.sin(), angle.cos()], dim=1)  # (g*g, w/2)
    table = torch.cat([encode(ys), encode(xs)], dim=1)  # (g*g, w)
    return torch.cat([torch.zeros(cls_tokens, width, dtype=torch.float64), table]).float()


def _lr_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    start = int(recipe.steps * recipe.decay_from)
    if step < start:
        return recipe.lr
    progress = (step - start) / max(1, recipe.steps - start)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def held_out_questions(count: int, *, max_objects: int, kinds: tuple[str, ...], seed: int = 1234) -> list[Question]:
    """``count`` questions of ``kinds`` on held-out scenes (the 'valid' stream, never trained on)."""
    weights = {kind: 1 for kind in kinds}
    out = []
    for sample in itertools.islice(samples(seed, "valid", max_objects, weights), count):
        truth = None
        if sample.kind == "box":
            name = sample.answer.split(" [[")[0].removeprefix("the ")
            obj = next(o for o in sample.scene.objects if o.name == name)
            truth = obj.grounding_box()
        out.append(Question(sample.image, sample.query, sample.answer, sample.kind, truth))
    return out


def _stream(recipe: Recipe) -> Iterator[tuple[int, Sample]]:
    weights = {**KIND_WEIGHTS, "colour": recipe.colour_weight, "box": recipe.box_weight}
    boxes = samples(recipe.seed + 1, "train", 1, {"box": 1})
    single = samples(recipe.seed, "train", 1, weights)
    multi = samples(recipe.seed, "train", 3, weights)
    choose = random.Random(f"{recipe.seed}/mix")
    step_of = itertools.count()
    while True:
        index = next(step_of)
        step = index // recipe.batch
        if step < recipe.box_only_steps:
            yield step, next(boxes)
            continue
        use_multi = step >= recipe.single_steps and choose.random() < recipe.multi_share
        yield step, next(multi if use_multi else single)


def score_model(model: CogVLMModel, text: TextProcessor, image: Any, count: int, seed: int) -> dict[str, Any]:
    """Greedy held-out scores on single-object scenes: boxes, and the word questions."""
    from ..cogvlm.chat import add_autoregressive_mixin

    add_autoregressive_mixin(model)
    try:
        boxes = evaluate(model, text, image, held_out_questions(count, max_objects=1, kinds=("box",), seed=seed))
        words = evaluate(model, text, image, held_out_questions(
            count, max_objects=1, kinds=("colour", "shape", "count", "position"), seed=seed))
    finally:
        model.del_mixin("auto-regressive")
    merged = Score({**boxes.asked, **words.asked}, {**boxes.right, **words.right}, boxes.ious)
    return {**merged.as_dict(), "box_hit": boxes.accuracy("box"), "colour_shape": words.accuracy("colour", "shape")}


def train_tiny(out: str | Path, recipe: Recipe = Recipe(), log: Callable[[str], None] = print) -> Path:
    """Train from the seed, write ``out/log.jsonl`` and the best checkpoint so far to ``out/best``
    (SAT layout); returns ``out/best``."""
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(TRAINED_CONFIG)
    built = build_model(config, seed=recipe.seed)
    model = built.model
    if recipe.init:  # continue a run: its weights replace the seeded ones
        from ..cogvlm.checkpoint import checkpoint_file, read_state_dict

        model.load_state_dict(read_state_dict(checkpoint_file(recipe.init)), strict=True)
    else:
        eva = model.get_mixin("eva").vit_model
        grid = config.eva["image_size"][0] // config.eva["patch_size"]
        with torch.no_grad():
            eva.transformer.position_embeddings.weight.copy_(
                sincos_position_embeddings(grid, config.eva["hidden_size"]))
    model.eval()  # dropout off (see the module doc); gradients flow as usual
    version = choose_version(None, config.values, config.name)
    text = TextProcessor(tokenizer_for_config(config.values, None, version), 1 << 30, int(config.values["image_length"]))
    trainer = TrainingTextProcessor(text, 256)
    image = get_image_processor(config.eva["image_size"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    logfile = (out / "log.jsonl").open("a", encoding="utf-8")
    logfile.write(json.dumps({"recipe": asdict(recipe), "parameters": built.num_parameters}) + "\n")
    stream = _stream(recipe)
    best = -1.0
    started = time.perf_counter()
    running = 0.0
    last = min(recipe.steps, recipe.stop_after or recipe.steps)
    for step in range(last):
        batch_samples = [next(stream)[1] for _ in range(recipe.batch)]
        batch = collate([{**trainer(s.answer, s.query), "image": s.image} for s in batch_samples],
                        text.tokenizer.pad_token_id, image)
        labels = batch.pop("labels")
        batch.pop("context_length")
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, recipe)
        loss = answer_loss(model(**batch)[0], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 50 == 0:
            elapsed = time.perf_counter() - started
            logfile.write(json.dumps({"step": step, "loss": round(loss.item(), 5), "smooth": round(running, 5),
                                      "lr": _lr_at(step, recipe), "seconds": round(elapsed, 1)}) + "\n")
            logfile.flush()
        if (step + 1) % recipe.eval_every == 0 or step + 1 == last:
            scores = score_model(model, text, image, recipe.eval_questions, recipe.seed + 1)
            elapsed = time.perf_counter() - started
            record = {"eval_step": step + 1, "seconds": round(elapsed, 1), **scores}
            logfile.write(json.dumps(record) + "\n")
            logfile.flush()
            log(f"step {step + 1}: loss {running:.3f}, boxes {scores['box_hit']:.0%} (mIoU {scores['mean_iou']:.2f}), "
                f"colour/shape {scores['colour_shape']:.0%}, {elapsed / 60:.1f} min")
            merit = scores["box_hit"] + scores["colour_shape"]
            if merit >= best:
                best = merit
                staging = out / f"step-{step + 1}"
                save_checkpoint(model, config, staging, iteration=step + 1)
                shutil.rmtree(out / "best", ignore_errors=True)
                staging.rename(out / "best")
    logfile.close()
    return out / "best"
