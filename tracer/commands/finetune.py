"""``cogtrace finetune CONFIG --data DIR``: fine-tune CogVLM on a CPU through SAT's ``training_main``.

Upstream's ``finetune_demo/finetune_cogvlm_demo.py`` on a CPU (fp32, gloo, DeepSpeed ZeRO 1),
full or LoRA, traced (categories construction and training). ``-o DIR`` then holds::

    checkpoints/<experiment>/   SAT's checkpoints (DeepSpeed layout, optimizer state included)
    export/                     the trained (LoRA-merged) model, weights only: cogtrace chat DIR/export
    trace.json, trace.chrome.json, training.txt, loss.png

Data parallel: ``torchrun --nproc_per_node 2 -m tracer.cli finetune ...`` (rank 0 writes the trace).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config or checkpoint folder (e.g. configs/tiny/cogvlm-grounding-trained)")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="DIR/train (and optionally DIR/valid) with images/*.jpg and labels/*.json")
    parser.add_argument("-o", "--output", default="out/finetune", metavar="DIR", help="new or empty folder")
    parser.add_argument("--iters", type=int, default=100, metavar="N", help="training iterations (default 100)")
    parser.add_argument("--lora-rank", type=int, default=None, metavar="R",
                        help="LoRA of rank R on the attention of both towers (default: full fine-tuning)")
    parser.add_argument("--layer-range", type=int, nargs="+", default=None, metavar="I",
                        help="layers that get LoRA (upstream's layer_range; default: all)")
    parser.add_argument("--deepspeed-config", default=None, metavar="JSON",
                        help="DeepSpeed config (default: the shipped fp32 CPU one, tracer/finetune/configs/)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--max-length", type=int, default=256, metavar="N", help="tokens per sample at most")
    parser.add_argument("--dropout", type=float, default=None, metavar="P",
                        help="the language model's hidden and attention dropout (default: SAT's 0.1)")
    parser.add_argument("--save-interval", type=int, default=None, metavar="N",
                        help="also save every N iterations (default: only at the end)")


def run(args: argparse.Namespace) -> int:
    from ..finetune.train import DEFAULT_DEEPSPEED_CONFIG, check_inputs, finetune

    out = Path(args.output)
    # Every input first, before SAT and DeepSpeed are imported (seconds) or anything is written.
    check_inputs(args.config, args.data, out, iters=args.iters, lora_rank=args.lora_rank,
                 layer_range=args.layer_range, deepspeed_config=args.deepspeed_config or DEFAULT_DEEPSPEED_CONFIG,
                 dropout=args.dropout)
    rank = int(os.environ.get("RANK", "0"))
    common = dict(iters=args.iters, lora_rank=args.lora_rank, layer_range=args.layer_range, seed=args.seed,
                  deepspeed_config=args.deepspeed_config or DEFAULT_DEEPSPEED_CONFIG, max_length=args.max_length,
                  save_interval=args.save_interval, dropout=args.dropout)
    if rank != 0:
        finetune(args.config, args.data, out, **common)  # type: ignore[arg-type]
        return 0

    from ..files import write_atomic
    from ..render.training import loss_curve, loss_png, training_text
    from ..session import trace

    meta = {"command": f"cogtrace finetune {args.config}", "config": str(args.config), "data": str(args.data),
            "lora_rank": args.lora_rank, "layer_range": args.layer_range, "iters": args.iters}
    with trace(None, categories=("construction", "training"), meta=meta) as handle:
        result = finetune(args.config, args.data, out, **common)  # type: ignore[arg-type]
    assert handle.trace is not None
    from ..session import write_files

    write_files(handle.trace, out)
    write_atomic(out / "training.txt", training_text(handle.trace))
    write_atomic(out / "loss.png", loss_png(loss_curve(handle.trace)))
    losses = ", ".join(f"{x:.4f}" for x in result.losses[:3]) + (" ..." if len(result.losses) > 3 else "")
    print(f"trained {len(result.losses)} iterations ({result.trainable:,} trainable parameters); loss {losses}")
    print(f"checkpoints: {result.save_dir}\nexport (cogtrace chat): {result.export_dir}\n"
          f"trace: {out / 'trace.json'}, {out / 'training.txt'}, {out / 'loss.png'}")
    return 0
