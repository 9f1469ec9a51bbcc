"""Upstream's ``finetune_demo/finetune_cogvlm_demo.py`` + ``finetune_cogvlm_lora.sh``, shaped the same,
running on a CPU through the toolkit (``tracer.finetune.train.finetune``: SAT's ``training_main`` +
DeepSpeed, fp32, gloo).

Upstream's option names are kept, so a command line from the shell script carries over::

    python scripts/finetune_cogvlm_demo.py --from_pretrained configs/tiny/cogvlm-grounding-trained \\
        --use_lora --lora_rank 4 --train-data DIR/train --train-iters 100 --save out/demo
    torchrun --nproc_per_node 2 scripts/finetune_cogvlm_demo.py ...      # data parallel

``--train-data DIR/train`` (and ``DIR/valid`` beside it, if present) is the CogVLM-SFT-311K layout.
What differs from upstream: the DeepSpeed config (``--deepspeed_config``, default the shipped fp32
CPU one), no ``--local_tokenizer`` (tiny configs ship theirs), and the merged model goes to
``SAVE/export`` rather than ``checkpoints/merged_lora_cogvlm<size>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tracer.errors import UserError
from tracer.finetune.train import DEFAULT_DEEPSPEED_CONFIG, finetune


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--from_pretrained", default="configs/tiny/cogvlm-grounding-trained")
    parser.add_argument("--use_lora", action="store_true")
    parser.add_argument("--lora_rank", type=int, default=10)
    parser.add_argument("--layer_range", nargs="+", type=int, default=None)
    parser.add_argument("--train-data", required=True, help="DIR/train (DIR/valid is used when present)")
    parser.add_argument("--train-iters", type=int, default=800)
    parser.add_argument("--save", default="checkpoints")
    parser.add_argument("--save-interval", type=int, default=None)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=2023)
    parser.add_argument("--deepspeed_config", default=str(DEFAULT_DEEPSPEED_CONFIG))
    args = parser.parse_args(argv)
    data = Path(args.train_data)
    data = data.parent if data.name == "train" else data
    try:
        result = finetune(args.from_pretrained, data, args.save, iters=args.train_iters,
                          lora_rank=args.lora_rank if args.use_lora else None,
                          layer_range=args.layer_range, seed=args.seed, deepspeed_config=args.deepspeed_config,
                          max_length=args.max_length, save_interval=args.save_interval)
    except UserError as e:
        print(f"finetune_cogvlm_demo: error: {e}", file=sys.stderr)
        return 2
    print(f"checkpoints: {result.save_dir}\nmerged model: {result.export_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
