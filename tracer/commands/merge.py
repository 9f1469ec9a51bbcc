"""``cogtrace merge OUT``: the per-rank traces of a model-parallel run into one trace and one report.

For runs traced per rank by ``torchrun --nproc_per_node N -m tracer.cli run -o OUT script.py``
(``OUT/rank<r>/trace.json``); ``cogtrace report --nproc N`` merges on its own. Writes
``OUT/trace.chrome.json`` (one lane per rank, aligned at a barrier), ``OUT/parallel.txt`` and
``OUT/report.html``. No torch needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="folder holding rank0/trace.json, rank1/trace.json, ...")


def run(args: argparse.Namespace) -> int:
    from ..files import write_atomic
    from ..parallel.cli import _collectives_svg
    from ..parallel.merge import load_rank_traces, write_merged
    from ..render.parallel import render_parallel_html, render_parallel_text

    out = Path(args.out)
    traces = load_rank_traces(out)
    merged = write_merged(out)
    write_atomic(out / "parallel.txt", render_parallel_text(traces))
    page = write_atomic(out / "report.html", render_parallel_html(
        traces, diagram_svg=_collectives_svg(traces[0], out), links={"merged Chrome/Perfetto trace": merged.name}))
    print(f"{len(traces)} ranks merged: {merged}; report: {page}")
    return 0
