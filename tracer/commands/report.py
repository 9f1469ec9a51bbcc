"""``cogtrace report CONFIG -o DIR``: trace the article end to end and write every view of it.

One traced run covers both halves of the article: section 2 (``from_pretrained`` →
``get_model`` → the ``__init__`` chain and its mixins) and section 3 (one chat turn: the
context forward with the image, then cached generation steps). The folder then holds:

    report.html          the self-contained report (open it in a browser)
    trace.json           the trace (re-render with ``cogtrace render``)
    trace.chrome.json    for Perfetto / chrome://tracing
    architecture.svg/.png, calls.svg, modules.svg, tokens.png
    tree.txt, modules.txt, hooks.txt, steps.txt, tokens.txt
    output.png           the image with the answer's grounding boxes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from ..cogvlm.config import ModelConfig
    from ..cogvlm.text_processor import TextProcessor
    from ..trace import Trace

DEFAULT_QUERY = "Where is the purple circle in the image? Give its bounding box as [[x0,y0,x1,y1]]."  # shapes.jpg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG_OR_CHECKPOINT",
                        help="checkpoint folder or config (e.g. configs/tiny/cogvlm-grounding-generalist)")
    parser.add_argument("--image", default=None, metavar="PATH", help="image for the chat turn (default: the "
                                                                      "shipped sample)")
    parser.add_argument("--query", default=DEFAULT_QUERY, metavar="TEXT", help=f"question (default: {DEFAULT_QUERY!r})")
    parser.add_argument("--version", default=None, metavar="VERSION",
                        help="prompt template: chat, vqa, chat_old or base (default: the model's)")
    parser.add_argument("--max-new-tokens", type=int, default=8, metavar="N",
                        help="generation steps at most (default 8: enough to see the KV cache grow)")
    parser.add_argument("--seed", type=int, default=1234, help="seed for sampling and generated tiny weights")
    parser.add_argument("--tokenizer", default=None, metavar="DIR", help="tokenizer folder for real checkpoints")
    parser.add_argument("--build-only", action="store_true",
                        help="trace construction only (from_pretrained with build_only=True, as the article does): "
                             "no chat turn, no shapes; works for full-size configs with --device meta")
    parser.add_argument("--device", choices=["cpu", "meta"], default="cpu",
                        help="cpu (default) or meta: shapes-only build of any size, implies --build-only")
    parser.add_argument("-o", "--output", default="out", metavar="DIR", help="folder to write into (default out/)")


def token_layout(text_processor: TextProcessor, prompt: str) -> dict[str, list[Any]]:
    """``meta['token_layout']`` (format in :mod:`tracer.render.tokens`) for one prompt."""
    from ..cogvlm.text_processor import position_ids_from_rope_mask

    inputs = text_processor(prompt)
    ids = [int(i) for i in inputs["input_ids"][0].tolist()]
    embed = [int(i) for i in inputs["image_embed_mask"][0].tolist()]
    expert = [int(i) for i in inputs["vision_expert_mask"][0].tolist()]
    rope = [int(i) for i in inputs["image_rope_mask"][0].tolist()]
    pieces = text_processor.tokenizer.pieces(ids)
    for i in range(len(ids)):  # the slots the vision tower fills have no text of their own
        if rope[i]:
            pieces[i] = "<image>"
        elif embed[i]:
            pieces[i] = "<boi>" if expert[i] else "<eoi>"
    positions = [int(p) for p in position_ids_from_rope_mask(rope)[0].tolist()]
    return {"tokens": ids, "pieces": pieces, "image_embed_mask": embed, "vision_expert_mask": expert,
            "image_rope_mask": rope, "position_ids": positions}


def write_views(trace: Trace, out: Path) -> dict[str, Path]:
    """Every view of ``trace`` as files in ``out``; diagrams are skipped (with a note) if
    Graphviz is missing, and views a trace has no data for (steps, tokens of a construction
    trace) are left out, so the text views and the report still appear."""
    from ..files import write_atomic
    from ..render.calls import render_calls
    from ..render.diagrams import GraphvizMissing, architecture_dot, calls_dot, modules_dot, to_png, to_svg
    from ..render.hooks import render_hooks
    from ..render.modules import render_modules
    from ..render.report import render_html
    from ..render.steps import render_steps
    from ..render.tokens import LayoutError, layout_png, render_layout_text

    written: dict[str, Path] = {}

    def put(name: str, data: str | bytes) -> None:
        written[name] = write_atomic(out / name, data)

    put("tree.txt", render_calls(trace))
    put("modules.txt", render_modules(trace))
    put("hooks.txt", render_hooks(trace))
    if any(True for _ in trace.of("generation")):
        put("steps.txt", render_steps(trace))
    try:
        put("tokens.txt", render_layout_text(trace))
        put("tokens.png", layout_png(trace))
    except LayoutError:
        pass  # a construction-only trace has no input sequence
    try:
        arch = architecture_dot(trace)
        put("architecture.dot", arch)
        put("architecture.svg", to_svg(arch))
        put("architecture.png", to_png(arch))
        put("calls.svg", to_svg(calls_dot(trace)))
        put("modules.svg", to_svg(modules_dot(trace)))
    except GraphvizMissing as e:
        print(f"note: diagrams skipped: {e}", file=sys.stderr)
    put("report.html", render_html(trace))
    return written


def run(args: argparse.Namespace) -> int:
    from ..cogvlm.config import load_config

    config = load_config(args.config)
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {args.max_new_tokens}: expected a positive integer")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: is a file, expected a folder")
    if args.build_only or args.device == "meta":
        return _build_only(args, config, out)

    from ..cogvlm import default_image
    from ..cogvlm.image_processor import get_image_processor, open_image
    from ..cogvlm.text_processor import TextProcessor
    from ..cogvlm.tokenizer import choose_version, tokenizer_for_config

    version = choose_version(args.version, config.values, config.name)
    tokenizer = tokenizer_for_config(config.values, args.tokenizer, version)
    # max_length is upstream's max_target_length, which inference never reads: the answer's
    # room is set below, from the prompt's own length.
    text_processor = TextProcessor(tokenizer, 1 << 30, int(config.values["image_length"]))
    query = text_processor.clean_query(args.query, "empty --query: expected a question about the image")
    context = len(text_processor.token_ids(text_processor.history_to_prompt(query))[0])
    max_length = context + args.max_new_tokens
    limit = int(config.values.get("max_sequence_length", max_length))
    if max_length > limit:
        raise UserError(f"the prompt is {context} tokens and --max-new-tokens {args.max_new_tokens}: "
                        f"above the model's max_sequence_length {limit}")
    image_processor = get_image_processor(config.eva["image_size"])
    image_path = args.image or str(default_image(config.name))
    image = open_image(image_path)  # a bad image fails here, before the model load

    from ..cogvlm.chat import SamplingOptions, add_autoregressive_mixin, chat
    from ..cogvlm.checkpoint import load_model
    from ..cogvlm.grounding import save_grounding
    from ..recorder import trace as record
    from ..recorder import write_files

    options = SamplingOptions(max_length=max_length, seed=args.seed)
    meta: dict[str, Any] = {"command": f"cogtrace report {args.config}", "config": str(args.config),
                            "device": "cpu", "image": image_path, "query": query, "prompt_version": version}
    started = time.perf_counter()
    # Recorded in memory and written only on success: a failed run leaves no folder behind.
    with record(None, meta=meta) as handle:
        model, _ = load_model(config, device="cpu", seed=args.seed)
        add_autoregressive_mixin(model)
        result = chat(image, model, text_processor, image_processor, query, options=options)
        handle.meta["response"] = result.response
        handle.meta["token_layout"] = token_layout(text_processor, result.prompt)
        ids = sorted(set(result.output_ids))
        handle.meta["token_pieces"] = {str(i): p for i, p in zip(ids, tokenizer.pieces(ids), strict=True)}
    traced = time.perf_counter() - started
    trace = handle.trace
    assert trace is not None  # set by the with block's exit
    write_files(trace, out)  # creates the folder
    grounding = save_grounding(result.image, result.response, out / "output.png")
    started = time.perf_counter()
    written = write_views(trace, out)
    rendered = time.perf_counter() - started
    print(f"Model: {result.response}")
    boxes = f"{len(grounding.boxes)} grounding boxes"
    if not grounding.boxes:  # the usual case on a tiny model: say why, and where to see boxes drawn
        boxes += (" (a model with seeded, untrained weights answers with random words; "
                  "walkthroughs/06_grounding.py draws boxes from a sample answer)")
    print(f"traced in {traced:.1f} s ({len(trace.events)} events), rendered in {rendered:.1f} s; "
          f"{boxes} -> {out / 'output.png'}")
    report = written["report.html"]
    print(f"report: {report} ({report.stat().st_size / 1e6:.1f} MB) — open it in a browser")
    return 0


def _build_only(args: argparse.Namespace, config: ModelConfig, out: Path) -> int:
    """The article's ``from_pretrained(..., build_only=True)``, traced: construction views only."""
    from ..cogvlm.checkpoint import load_model
    from ..recorder import trace as record
    from ..recorder import write_files

    meta: dict[str, Any] = {"command": f"cogtrace report {args.config} --build-only --device {args.device}",
                            "config": str(args.config), "device": args.device}
    started = time.perf_counter()
    with record(None, categories=("construction",), meta=meta) as handle:
        load_model(config, device=args.device, build_only=True, seed=args.seed)
    trace = handle.trace
    assert trace is not None
    write_files(trace, out)  # creates the folder
    traced = time.perf_counter() - started
    written = write_views(trace, out)
    report = written["report.html"]
    print(f"built and traced in {traced:.1f} s ({len(trace.events)} construction events); "
          f"report: {report} ({report.stat().st_size / 1e6:.1f} MB)")
    return 0
