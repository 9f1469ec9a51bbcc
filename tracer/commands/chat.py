"""``cogtrace chat CONFIG_OR_CHECKPOINT``: the article's section 3 — upstream's ``cli_demo_sat.py``.

One turn with ``--query``; without it, the interactive loop of ``cli_demo_sat.py`` (an image
path, then questions; ``clear`` starts over with a new image, ``stop`` or end of input quits).
Every input is checked before the model is loaded, so a bad path, an empty query, an
unknown version or a prompt longer than ``--max-length`` costs no model load and leaves no
``output.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cogvlm import DEFAULT_QUERY, SAMPLE_IMAGE, SHAPES_IMAGE, default_image
from ..errors import UserError
from ..threads import SINGLE_THREAD_BELOW

if TYPE_CHECKING:
    from ..cogvlm.chat import ChatResult, SamplingOptions
    from ..cogvlm.image_processor import ImageProcessor
    from ..cogvlm.text_processor import TextProcessor

# Inside out/ (ignored by git, where `make report` writes too): never a stray file in a checkout.
DEFAULT_OUTPUT = "out/output.png"
# Enough for a grounding answer with a few boxes; an untrained tiny model otherwise babbles
# until --max-length is full (~800 tokens).
DEFAULT_MAX_NEW_TOKENS = 64
WELCOME = ('Welcome to the CogVLM CLI (cogtrace). Enter an image path (Enter for {default}), then questions. '
           'Type "clear" to start over with another image, or "stop" to end.')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG_OR_CHECKPOINT",
                        help="checkpoint folder, or config (e.g. configs/tiny/cogvlm-grounding-generalist: "
                             "its weights are generated once from a fixed seed and cached)")
    parser.add_argument("--image", default=None, metavar="PATH",
                        help=f"image to talk about (default: the shipped sample, {SAMPLE_IMAGE.name}; {SHAPES_IMAGE.name} for the trained tiny model)")
    parser.add_argument("--query", default=None, metavar="TEXT",
                        help=f"answer this one question and exit (default: interactive loop; try {DEFAULT_QUERY!r})")
    parser.add_argument("--version", default=None, metavar="VERSION",
                        help="prompt template: chat, vqa, chat_old or base (default: the model's, "
                             "as in upstream's README; chat otherwise)")
    parser.add_argument("--max-length", type=int, default=2048, metavar="N",
                        help="total sequence length: prompt (image slots included) + answer (default 2048)")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N",
                        help=f"answer tokens at most (default {DEFAULT_MAX_NEW_TOKENS})")
    parser.add_argument("--top-p", type=float, default=0.4, metavar="P", help="nucleus sampling (default 0.4)")
    parser.add_argument("--top-k", type=int, default=1, metavar="K", help="top-k sampling (default 1)")
    parser.add_argument("--temperature", type=float, default=0.8, metavar="T", help="default 0.8")
    parser.add_argument("--seed", type=int, default=1234,
                        help="seed for sampling: the same seed gives the same answer (default 1234)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, metavar="PATH",
                        help=f"where to save the image with grounding boxes (default {DEFAULT_OUTPUT})")
    parser.add_argument("--tokenizer", default=None, metavar="DIR",
                        help="tokenizer directory (vicuna-7b-v1.5) for real checkpoints; "
                             "tiny configs use the shipped one")
    parser.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch intra-op threads (default: 1 for tiny models, torch's default otherwise)")
    from ..parallel.cli import add_parallel_arguments

    add_parallel_arguments(parser)


# ---------------------------------------------------------------------------------------------
# Checks that run before the model is loaded


def _check_query(query: str, text_processor: TextProcessor, max_length: int) -> None:
    """Refuse an empty query or one whose prompt leaves no room for an answer."""
    query = text_processor.clean_query(
        query, "empty query: expected a question about the image, e.g. --query \"What is in the image?\"")
    ids, _ = text_processor.token_ids(text_processor.history_to_prompt(query))
    text_processor.check_room(len(ids), max_length)


# ---------------------------------------------------------------------------------------------
# One turn, printed


def _turn(image: Any, query: str, history: list[tuple[str, str]], model: Any, text_processor: TextProcessor,
          image_processor: ImageProcessor, options: SamplingOptions, stream: bool, output: Path,
          extra: dict[str, Any]) -> ChatResult:
    # ``extra``: the model adapter's chat options (CogAgent: its cross image processor)
    from ..cogvlm.chat import chat, stream_chat
    from ..cogvlm.grounding import save_grounding

    if stream:
        print("Model: ", end="", flush=True)
        pieces = stream_chat(image, model, text_processor, image_processor, query, history, options, **extra)
        while True:
            try:
                print(next(pieces), end="", flush=True)
            except StopIteration as done:
                result: ChatResult = done.value
                break
        print()
    else:
        result = chat(image, model, text_processor, image_processor, query, history, options, **extra)
        print(f"Model: {result.response}")
    grounding = save_grounding(result.image, result.response, output)
    print(f"  [{result.context_length} prompt tokens ({text_processor.image_length} image slots), "
          f"{len(result.generated_ids)} generated in {result.seconds:.2f} s; "
          f"{len(grounding.boxes)} boxes drawn -> {output}]")
    return result


def _interactive(default_image: str, model: Any, text_processor: TextProcessor, image_processor: ImageProcessor,
                 options: SamplingOptions, stream: bool, output: Path, extra: dict[str, Any]) -> int:
    """``cli_demo_sat.py``'s loop; errors in a turn are printed and the loop goes on."""
    from ..cogvlm.image_processor import open_image

    print(WELCOME.format(default=default_image))
    try:
        while True:
            path = input("Image path: ").strip() or default_image
            if path == "stop":
                return 0
            try:
                image = open_image(path)
            except UserError as e:
                print(f"error: {e}")
                continue
            history: list[tuple[str, str]] = []
            while True:
                query = input("User: ")
                if query.strip() == "clear":
                    break
                if query.strip() == "stop":
                    return 0
                try:
                    result = _turn(image, query, history, model, text_processor, image_processor, options,
                                   stream, output, extra)
                except UserError as e:
                    print(f"error: {e}")
                    continue
                history = result.history
    except EOFError:
        print()
        return 0


def _set_threads(requested: int | None, model: Any) -> None:
    """This process's torch threads: as asked, or one for a tiny model (see SINGLE_THREAD_BELOW)."""
    import torch

    if requested is None and sum(p.numel() for p in model.parameters()) < SINGLE_THREAD_BELOW:
        requested = 1
    if requested is not None:
        torch.set_num_threads(requested)


def run(args: argparse.Namespace) -> int:
    from ..adapters import adapter_for_config
    from ..cogvlm.grounding import check_output_file
    from ..cogvlm.image_processor import get_image_processor, open_image
    from ..cogvlm.text_processor import TextProcessor
    from ..cogvlm.tokenizer import choose_version, tokenizer_for_config
    from ..files import check_writable_file

    # 1. Everything the user typed, before the (slow) model load.
    adapter = adapter_for_config(args.config)
    config = adapter.load_config(args.config)
    version = choose_version(args.version, config.values, config.name)
    output = Path(args.output)
    if args.output == DEFAULT_OUTPUT:
        output.parent.mkdir(parents=True, exist_ok=True)
    check_output_file(output)
    check_writable_file(output)  # before the model turn, not after it
    max_position = int(config.values.get("max_sequence_length", args.max_length))
    if args.max_length > max_position:
        raise UserError(f"--max-length {args.max_length}: above the model's max_sequence_length {max_position}")
    tokenizer = tokenizer_for_config(config.values, args.tokenizer, version)
    text_processor = TextProcessor(tokenizer, args.max_length, int(config.values["image_length"]))
    image_processor = get_image_processor(config.eva["image_size"])
    image_path = args.image or str(default_image(config.name))
    image = open_image(image_path) if args.query is not None else None
    if args.query is not None:
        _check_query(args.query, text_processor, args.max_length)
    from ..cogvlm.chat import SamplingOptions, add_autoregressive_mixin  # SAT's import: a few seconds

    options = SamplingOptions(max_length=args.max_length, top_p=args.top_p, top_k=args.top_k,
                              temperature=args.temperature, seed=args.seed, max_new_tokens=args.max_new_tokens)
    options.check()
    if args.threads is not None and args.threads <= 0:
        raise UserError(f"--threads {args.threads}: expected a positive integer")

    if args.nproc is not None and args.nproc != 1:  # model parallel: each rank loads its slice
        from ..parallel.cli import chat_parallel

        return chat_parallel(args, config)

    # 2. The model, as cli_demo_sat.py: from_pretrained, eval, the KV-cache mixin.
    print(f"[Language processor version]: {version}")
    # --seed is for sampling only: a tiny config always gets the same generated checkpoint.
    model, _ = adapter.load(config, device="cpu")
    extra = adapter.chat_options(config)
    add_autoregressive_mixin(model)
    _set_threads(args.threads, model)

    # 3. Talk.
    if args.query is not None:
        _turn(image, args.query, [], model, text_processor, image_processor, options, args.stream, output, extra)
        return 0
    return _interactive(image_path, model, text_processor, image_processor, options, args.stream, output, extra)
