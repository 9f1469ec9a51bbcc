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

from ..cogvlm import DEFAULT_QUERY, SHAPES_QUERY, default_image, default_query
from ..errors import UserError
from ._tracing import add_max_steps_argument, max_steps

if TYPE_CHECKING:
    from ..cogvlm.config import ModelConfig
    from ..schema import Trace

# The files a report folder holds besides its views: a re-run replaces all of them at once (and
# every view file any registered model can write, see report_files), and keeps anything else.
REPORT_FILES = frozenset({"report.html", "trace.json", "trace.chrome.json", "output.png"})


def report_files() -> frozenset[str]:
    """Every file name a report folder can hold, whichever model wrote it: a re-run for another
    model must not keep the previous model's views as if they were the user's files."""
    from ..render.registry import all_view_names

    views = {f"{name}.{ext}" for name in all_view_names() for ext in ("txt", "dot", "svg", "png")}
    return REPORT_FILES | views


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG_OR_CHECKPOINT",
                        help="checkpoint folder or config (e.g. configs/tiny/cogvlm-grounding-generalist)")
    parser.add_argument("--image", default=None, metavar="PATH", help="image for the chat turn (default: the "
                                                                      "shipped sample)")
    parser.add_argument("--query", default=None, metavar="TEXT",
                        help=f"question (default: one that fits the default picture: {SHAPES_QUERY!r} for the trained "
                             f"tiny model, {DEFAULT_QUERY!r} otherwise)")
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
    add_max_steps_argument(parser)
    from ..parallel.cli import add_parallel_arguments

    add_parallel_arguments(parser)


def write_views(trace: Trace, out: Path) -> dict[str, Path]:
    """Every view the registry gives ``trace`` as files in ``out`` (text → NAME.txt, diagrams →
    NAME.svg and the forms a view keeps, pictures → NAME.png), then report.html. Diagrams are
    skipped (with a note) if Graphviz is missing; views the trace has no data for are left out."""
    from ..files import write_atomic
    from ..render.diagrams import GraphvizMissing, to_png, to_svg
    from ..render.registry import views_for
    from ..render.report import render_html

    written: dict[str, Path] = {}

    def put(name: str, data: str | bytes) -> None:
        written[name] = write_atomic(out / name, data)

    views = [v for v in views_for(trace).values() if v.available(trace)]
    for view in views:
        try:
            if view.text is not None:
                put(f"{view.name}.txt", view.render_text(trace))
            if view.png is not None:
                put(f"{view.name}.png", view.png(trace))
        except view.errors:
            pass  # e.g. a construction-only trace has no input sequence
    try:
        for view in views:
            if view.dot is None:
                continue
            dot = view.dot(trace)
            if "dot" in view.keep:
                put(f"{view.name}.dot", dot)
            put(f"{view.name}.svg", to_svg(dot))
            if "png" in view.keep:
                put(f"{view.name}.png", to_png(dot))
    except GraphvizMissing as e:
        print(f"note: diagrams skipped: {e}", file=sys.stderr)
    put("report.html", render_html(trace))
    return written


def run(args: argparse.Namespace) -> int:
    from ..adapters import adapter_for_config
    from ..files import check_writable_folder
    adapter = adapter_for_config(args.config)
    config = adapter.load_config(args.config)
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {args.max_new_tokens}: expected a positive integer")
    steps = max_steps(args.max_steps)  # checked before any model work, like the output folder
    out = check_writable_folder(args.output)
    parallel = args.nproc is not None and args.nproc != 1
    if args.build_only or args.device == "meta":
        if parallel:
            raise UserError(f"--nproc {args.nproc} with --build-only/--device meta: expected one of them (a "
                            f"model-parallel report traces a chat turn on CPU ranks)")
        return _build_only(args, adapter, config, out)

    from ..cogvlm.image_processor import get_image_processor, open_image
    from ..cogvlm.text_processor import TextProcessor
    from ..cogvlm.tokenizer import choose_version, tokenizer_for_config

    version = choose_version(args.version, config.values, config.name)
    try:
        tokenizer = tokenizer_for_config(config.values, args.tokenizer, version)
    except UserError as e:  # no tokenizer for a full-width config: the construction half still runs
        raise UserError(f"{e}; or trace its construction alone with --device meta "
                        f"(cogtrace report {args.config} --device meta)") from e
    # max_length is upstream's max_target_length, which inference never reads: the answer's
    # room is set below, from the prompt's own length.
    text_processor = TextProcessor(tokenizer, 1 << 30, int(config.values["image_length"]))
    asked = args.query if args.query is not None else default_query(config.name)
    query = text_processor.clean_query(asked, "empty --query: expected a question about the image")
    context = len(text_processor.token_ids(text_processor.history_to_prompt(query))[0])
    max_length = context + args.max_new_tokens
    limit = int(config.values.get("max_sequence_length", max_length))
    if max_length > limit:
        raise UserError(f"the prompt is {context} tokens and --max-new-tokens {args.max_new_tokens}: "
                        f"above the model's max_sequence_length {limit}")
    image_processor = get_image_processor(config.eva["image_size"])
    image_path = args.image or str(default_image(config.name))
    image = open_image(image_path)  # a bad image fails here, before the model load
    if parallel:  # every rank traced, merged into one trace and one report
        from ..parallel.cli import report_parallel

        return report_parallel(args, config, out, query, max_length, image_path, version)

    from ..cogvlm.chat import SamplingOptions, add_autoregressive_mixin, chat
    from ..cogvlm.grounding import save_grounding
    from ..cogvlm.memory import rough_parameters
    from ..files import StagedFolder
    from ..session import trace as record
    from ..session import write_files
    from ..threads import threads_for

    options = SamplingOptions(max_length=max_length, seed=args.seed)
    meta: dict[str, Any] = {"command": f"cogtrace report {args.config}", "config": str(args.config),
                            "device": "cpu", "image": image_path, "query": query, "prompt_version": version}
    started = time.perf_counter()
    # Recorded in memory and written only on success: a failed run leaves no folder behind.
    with threads_for(rough_parameters(config)), record(None, meta=meta, max_steps=steps) as handle:
        model, _ = adapter.load(config, device="cpu", seed=args.seed)
        add_autoregressive_mixin(model)
        result = chat(image, model, text_processor, image_processor, query, options=options,
                      **adapter.chat_options(config))
        handle.meta["response"] = result.response
        handle.meta["token_layout"] = adapter.prompt_layout(text_processor, result.prompt)
        ids = sorted(set(result.output_ids))
        handle.meta["token_pieces"] = {str(i): p for i, p in zip(ids, tokenizer.pieces(ids), strict=True)}
    traced = time.perf_counter() - started
    trace = handle.trace
    assert trace is not None  # set by the with block's exit
    started = time.perf_counter()
    # The whole folder is staged and swapped in at the end: Ctrl-C, SIGTERM or a full disk while
    # writing leaves the previous report as it was, never the new trace beside old pictures.
    with StagedFolder(out, owned=report_files()) as stage:
        write_files(trace, stage, staged=False)
        grounding = save_grounding(result.image, result.response, stage / "output.png")
        written = {name: out / name for name in write_views(trace, stage)}
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


def _build_only(args: argparse.Namespace, adapter: Any, config: ModelConfig, out: Path) -> int:
    """The article's ``from_pretrained(..., build_only=True)``, traced: construction views only."""
    from ..files import StagedFolder
    from ..session import trace as record
    from ..session import write_files

    meta: dict[str, Any] = {"command": f"cogtrace report {args.config} --build-only --device {args.device}",
                            "config": str(args.config), "device": args.device}
    started = time.perf_counter()
    with record(None, categories=("construction",), meta=meta) as handle:
        adapter.load(config, device=args.device, build_only=True, seed=args.seed)
    trace = handle.trace
    assert trace is not None
    traced = time.perf_counter() - started
    with StagedFolder(out, owned=report_files()) as stage:  # see run(): all of it or nothing
        write_files(trace, stage, staged=False)
        written = {name: out / name for name in write_views(trace, stage)}
    report = written["report.html"]
    print(f"built and traced in {traced:.1f} s ({len(trace.events)} construction events); "
          f"report: {report} ({report.stat().st_size / 1e6:.1f} MB)")
    return 0
