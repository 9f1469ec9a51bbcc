"""``cogtrace shapes CONFIG [-o DIR] [--text-tokens N]``: every tensor shape at full width, on meta.

Builds the config on the meta device and traces one context forward (image + text) with
:class:`tracer.shapes.MetaWithValues`: weights and activations have shapes but no memory,
while token ids, masks and position ids are real, so the shapes are the real model's —
the article's variant (4096/1792 wide, 1225 image tokens) in well under 4 GB.
"""

from __future__ import annotations

import argparse

from ..schema import shape_text
from ._tracing import add_trace_arguments, check_output, report_written, trace_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config folder or model_config.json (e.g. configs/article/cogvlm-grounding-generalist)")
    parser.add_argument("--text-tokens", type=int, default=16, metavar="N",
                        help="text tokens after the image in the traced prompt (default: 16)")
    parser.add_argument("--num-layers", type=int, default=None, metavar="N",
                        help="override num_layers of the language model")
    add_trace_arguments(parser, output_help="write DIR/trace.json and DIR/trace.chrome.json")


def _shape(info: object) -> str:
    return shape_text(info["shape"]) if isinstance(info, dict) and "shape" in info else "-"


def run(args: argparse.Namespace) -> int:
    from ..adapters import adapter_for_config
    from ..errors import UserError

    config = adapter_for_config(args.config).load_config(args.config)
    if args.text_tokens < 1:
        raise UserError(f"--text-tokens {args.text_tokens}: expected a positive integer")
    if args.num_layers is not None and args.num_layers <= 0:
        raise UserError(f"--num-layers {args.num_layers}: expected a positive integer")
    options = trace_options(args)
    out = check_output(args.output) if args.output is not None else None

    from ..shapes import record_shapes

    run_ = record_shapes(config.path, out_dir=out, text_tokens=args.text_tokens, num_layers=args.num_layers,
                         categories=iter(options["categories"]), max_depth=options["max_depth"])
    trace = run_.handle.trace
    print(f"{trace.meta.get('model_class', 'model')}  {config.path}  on meta, {args.text_tokens} text tokens")
    print(f"  logits: {shape_text(run_.logits_shape)}   events: {len(trace.events)}   "
          f"time: {run_.seconds:.1f} s   peak RSS: {run_.peak_rss_mb:.0f} MB")
    print("\nSAT hooks of the first layer of each model (input -> output):")
    seen: set[tuple[str, str]] = set()
    for event in trace.of("hook"):
        data = event.data
        key = (str(data.get("model_path")), event.name)
        if data.get("layer_id") not in (None, 0) or key in seen:
            continue
        seen.add(key)
        where = data.get("model_path") or "(root)"
        inputs = [i for i in data.get("inputs", []) if i]
        outputs = [o for o in data.get("outputs", []) if o]
        arrow = f"{_shape(inputs[0]) if inputs else '-'} -> {_shape(outputs[0]) if outputs else '-'}"
        print(f"  {where:<22} {event.name:<28} {data.get('served_by', ''):<16} {arrow}")
    report_written(run_.handle.paths)
    return 0
