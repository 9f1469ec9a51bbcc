"""The program each rank runs under ``torchrun``: ``python -m tracer.parallel.worker JOB ...``.

Jobs (all ranks run the same job; every rank holds its slice of the model):

* ``chat CONFIG`` — upstream ``cli_demo_sat.py`` at model_parallel_size = world size: rank 0
  reads the image path and each question (``--query`` or ``input()``) and broadcasts them;
  every rank generates; rank 0 prints the answer and saves the grounding picture.
* ``logits CONFIG --save DIR`` — one context forward on the sample image; each rank saves its
  logits (``DIR/logits_rank<r>.pt``) for comparison with a single process.
* ``roundtrip CONFIG --work DIR`` — checkpoints across sizes: split an mp=1 checkpoint at load,
  save mp=N (``mp_rank_00`` ...), load that, merge back to mp=1 as upstream's ``merge_model.py``;
  logits of each stage are saved, and the stale shard the merge leaves on ranks > 0 is named.

``--trace OUT`` traces each rank into ``OUT/rank<r>/``. ``--fail-rank R`` makes rank R exit
with status 3 right after joining the group, to watch what the other ranks do (they are stopped
by torchrun; :mod:`.launch` reports it in one line). A :class:`UserError` prints one line
``cogtrace: error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..chatter import VERBOSE_VAR, LibraryLog
from ..commands._tracing import add_max_steps_argument, max_steps
from ..errors import UserError

ERROR_PREFIX = "cogtrace: error: "
FAIL_EXIT = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tracer.parallel.worker")
    parser.add_argument("job", choices=("chat", "logits", "roundtrip"))
    parser.add_argument("config")
    parser.add_argument("--trace", default=None, metavar="OUT", help="trace each rank into OUT/rank<r>/")
    add_max_steps_argument(parser)
    parser.add_argument("--query", default=None)
    parser.add_argument("--image", default=None)
    parser.add_argument("--version", default=None)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=0.4)
    parser.add_argument("--top-k", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--output", default="output.png")
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--no-split", action="store_true", help="refuse an mp=1 checkpoint instead of splitting it")
    parser.add_argument("--save", default=None, metavar="DIR", help="logits: where each rank saves its logits")
    parser.add_argument("--work", default=None, metavar="DIR", help="roundtrip: folder for the checkpoints")
    parser.add_argument("--fail-rank", type=int, default=None, metavar="R")
    parser.add_argument("--command", default="chat", help=argparse.SUPPRESS)
    return parser


@contextlib.contextmanager
def _quiet_unless(rank0: bool) -> Iterator[None]:
    with contextlib.nullcontext() if rank0 else contextlib.redirect_stdout(io.StringIO()):
        yield


def _processors(config: Any, args: argparse.Namespace) -> tuple[Any, Any, str]:
    from ..cogvlm.image_processor import get_image_processor
    from ..cogvlm.text_processor import TextProcessor
    from ..cogvlm.tokenizer import choose_version, tokenizer_for_config

    version = choose_version(args.version, config.values, config.name)
    tokenizer = tokenizer_for_config(config.values, args.tokenizer, version)
    text = TextProcessor(tokenizer, args.max_length, int(config.values["image_length"]))
    return text, get_image_processor(config.eva["image_size"]), version


def _note(handle: Any, model: Any, rank: int) -> None:
    """Put this rank's slices of every weight into its trace's meta (who holds what)."""
    if handle is None:
        return
    import torch

    from .layout import parallel_layout

    handle.meta["parallel_layout"] = parallel_layout(model, rank, torch.distributed.get_world_size())


def _chat(config: Any, args: argparse.Namespace, rank: int, handle: Any) -> None:
    from .. import cogvlm
    from ..cogvlm.chat import SamplingOptions, add_autoregressive_mixin, chat
    from ..cogvlm.grounding import save_grounding
    from ..cogvlm.image_processor import open_image
    from .checkpoints import load_parallel
    from .rank import broadcast_input

    text_processor, image_processor, version = _processors(config, args)
    options = SamplingOptions(max_length=args.max_length, top_p=args.top_p, top_k=args.top_k,
                              temperature=args.temperature, seed=args.seed, max_new_tokens=args.max_new_tokens)
    options.check()
    model, _ = load_parallel(config, split=not args.no_split)
    _note(handle, model, rank)
    add_autoregressive_mixin(model)
    if rank == 0:
        print(f"[Language processor version]: {version}", flush=True)
    default_image = args.image or str(cogvlm.SAMPLE_IMAGE)
    image_path = broadcast_input(lambda: default_image if args.query is not None
                                 else (input("Image path: ").strip() or default_image), rank)
    image = open_image(image_path)
    history: list[tuple[str, str]] = []
    while True:
        query = broadcast_input(lambda: args.query if args.query is not None else _read_query(), rank)
        if query is None:
            return
        result = chat(image, model, text_processor, image_processor, query, history, options)
        history = result.history
        if rank == 0:
            print(f"Model: {result.response}", flush=True)
            save_grounding(result.image, result.response, Path(args.output))
        if args.query is not None:
            return


def _read_query() -> str | None:
    """Rank 0's ``User:`` prompt; None (broadcast to all ranks) ends the loop."""
    try:
        query = input("User: ")
    except EOFError:
        return None
    return None if query.strip() in ("stop", "") else query


def _logits(model: Any, args: Any) -> Any:
    from .rank import sample_logits

    return sample_logits(model, args)


def _save(tensor: Any, folder: Path, name: str, rank: int) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tensor, folder / f"{name}_rank{rank}.pt")


def _logits_job(config: Any, args: argparse.Namespace, rank: int, handle: Any) -> None:
    from .checkpoints import load_parallel

    if args.save is None:
        raise UserError("logits: --save DIR is required (expected a folder for logits_rank<r>.pt)")
    model, margs = load_parallel(config, split=not args.no_split)
    _note(handle, model, rank)
    _save(_logits(model, margs), Path(args.save), "logits", rank)


def _roundtrip(config: Any, args: argparse.Namespace, rank: int, handle: Any) -> None:
    import torch

    from .checkpoints import load_parallel, merge_parallel, save_parallel
    from .checks import ParallelError, check_partition

    if args.work is None:
        raise UserError("roundtrip: --work DIR is required (expected a folder for the checkpoints)")
    work = Path(args.work)
    size = torch.distributed.get_world_size()
    model, margs = load_parallel(config)  # split at load from the mp=1 checkpoint
    _note(handle, model, rank)
    _save(_logits(model, margs), work, "split", rank)
    saved = save_parallel(model, margs, work / f"mp{size}")
    del model
    model, largs = load_parallel(saved)  # mp_rank_XX files, one per rank
    _save(_logits(model, largs), work, "loaded", rank)
    del model
    merged, merged_args = merge_parallel(saved, work / "merged" if rank == 0 else None)
    if rank == 0:
        _save(_logits(merged, merged_args), work, "merged", rank)
    else:
        from sat import mpu

        try:  # the trap: SAT now reports world size 1 while this rank keeps its old slice
            check_partition(merged, mpu.get_model_parallel_world_size(), rank)
        except ParallelError as e:
            (work / f"stale_rank{rank}.txt").write_text(str(e) + "\n", encoding="utf-8")


def _wait_for_debugger(rank: int) -> None:
    """With ``COGTRACE_DEBUG_PORT`` set (``--debug-port``), rank r listens on that port + r and
    waits until a debugger attaches (VS Code: "Attach to rank r")."""
    from .launch import DEBUG_PORT_VAR

    base = os.environ.get(DEBUG_PORT_VAR)
    if not base:
        return
    import debugpy

    port = int(base) + rank
    debugpy.listen(("127.0.0.1", port))
    print(f"rank {rank}: waiting for a debugger on 127.0.0.1:{port}", flush=True)
    debugpy.wait_for_client()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # Each rank imports SAT and DeepSpeed itself: their log lines are kept in the rank's
        # trace (meta.library_log) as in one process, not printed, unless cogtrace --verbose.
        with LibraryLog(verbose=os.environ.get(VERBOSE_VAR) == "1"):
            return _run(args)
    except UserError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr, flush=True)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..cogvlm.config import load_config
    from .checks import check_world_size
    from .rank import init_distributed, traced_rank

    torch.set_num_threads(1)
    config = load_config(args.config)
    check_world_size(config.values, int(os.environ.get("WORLD_SIZE", 1)))
    rank, size = init_distributed()
    _wait_for_debugger(rank)
    if args.fail_rank is not None and rank == args.fail_rank:
        print(f"rank {rank}: exiting with status {FAIL_EXIT} as asked (--fail-rank)", file=sys.stderr, flush=True)
        os._exit(FAIL_EXIT)
    meta = {"command": args.command, "config": str(args.config), "job": args.job}
    jobs = {"chat": _chat, "logits": _logits_job, "roundtrip": _roundtrip}
    started = time.perf_counter()
    with _quiet_unless(rank == 0), traced_rank(args.trace, meta, max_steps(args.max_steps)) as handle:
        jobs[args.job](config, args, rank, handle)
    seconds = time.perf_counter() - started  # the job and, when traced, writing this rank's trace
    if args.job == "logits" and args.save is not None:  # what bench/parallel.py compares
        timing = {"rank": rank, "world_size": size, "traced": args.trace is not None, "seconds": seconds}
        (Path(args.save) / f"timing_rank{rank}.json").write_text(json.dumps(timing) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
