"""Regenerate the shipped comparisons in ``docs/comparisons/`` (``make docs`` runs this).

Each comparison is two traces through the toolkit's own recording, compared by
:func:`tracer.diff.diff_traces` and written as ``NAME.txt`` (what ``cogtrace diff A B`` prints)
and ``NAME.html`` (``cogtrace diff A B --format html``: the explorer in two columns):

* ``llama-vs-cogvlm``: SAT's own ``LLaMAModel`` and CogVLM, each built by ``get_model(args, cls)``
  from the same tiny Namespace (configs/tiny/cogvlm-grounding-generalist) — what CogVLM's
  ``__init__`` adds to LLaMA: the ``eva`` mixin, and the ``mlp`` and ``rotary`` mixins swapped for
  their vision-expert versions;
* ``chat-vs-grounding``: ``cogtrace report`` of the tiny chat-v1.1 and grounding-generalist
  configs with the same image and question — the config, the prompt template, and what the
  template changes downstream (token layout, shapes, generation);
* ``cogvlm-vs-cogagent``: ``cogtrace report --build-only`` of the tiny cogvlm-chat-v1.1 and
  cogagent-chat configs — what CogAgent's construction adds: the ``encoder`` mixin (the
  high-resolution EVA2-CLIP-L) and SAT's cross-attention in every layer.

Volatile fields never differ (times, addresses, absolute paths), so a rerun on the same
versions writes the same files.

Run:  python scripts/gen_comparisons.py [--only NAME]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "comparisons"
TINY = "configs/tiny/cogvlm-grounding-generalist"
CHAT = "configs/tiny/cogvlm-chat-v1.1"
QUERY = "Where is the dog in the image? Answer with coordinates."
AGENT = "configs/tiny/cogagent-chat"
NAMES = ("llama-vs-cogvlm", "chat-vs-grounding", "cogvlm-vs-cogagent")


def built_by_get_model(model_class: str) -> Any:
    """A trace of ``get_model(args, cls)`` alone: the Namespace is made before recording, so both
    sides start from the same arguments and only the model classes differ."""
    from sat.model.base_model import get_model
    from sat.model.official.llama_model import LLaMAModel

    from tracer.cogvlm.build import DEFAULT_SEED, inference_args, placement
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.model import CogVLMModel
    from tracer.session import trace

    cls = {"LLaMAModel": LLaMAModel, "CogVLMModel": CogVLMModel}[model_class]
    args = inference_args(load_config(TINY), device="cpu")
    with trace(None, meta={"command": f"get_model(args, {model_class})", "config": TINY}) as handle:
        with placement("cpu", DEFAULT_SEED):
            get_model(args, cls)
    return handle.trace


def reported(config: str, work: Path) -> Any:
    from tracer.cli import main as cogtrace
    from tracer.commands.render import load_trace

    out = work / Path(config).name
    print(f"$ cogtrace report {config} --query {QUERY!r} --max-new-tokens 4 -o {out}", flush=True)
    if cogtrace(["report", config, "--query", QUERY, "--max-new-tokens", "4", "-o", str(out)]):
        raise SystemExit(f"cogtrace report {config} failed")
    return load_trace(out)


def built_only(config: str, work: Path) -> Any:
    from tracer.cli import main as cogtrace
    from tracer.commands.render import load_trace

    out = work / Path(config).name
    print(f"$ cogtrace report {config} --build-only -o {out}", flush=True)
    if cogtrace(["report", config, "--build-only", "-o", str(out)]):
        raise SystemExit(f"cogtrace report {config} --build-only failed")
    return load_trace(out)


def write(name: str, a: Any, b: Any, a_name: str, b_name: str) -> None:
    from tracer.diff import diff_traces
    from tracer.files import write_atomic
    from tracer.render.diffview import render_diff_text
    from tracer.render.explorer import render_diff_html

    diff = diff_traces(a, b, a_name=a_name, b_name=b_name)
    write_atomic(OUT / f"{name}.txt", render_diff_text(diff, width=140, limit=0))
    write_atomic(OUT / f"{name}.html", render_diff_html(diff, a, b, links=False))
    counts = ", ".join(f"{s} {n}" for s, n in diff.counts().items() if n)
    print(f"{name}: {counts or 'no differences'} -> {OUT / name}.txt/.html")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=NAMES, default=None, help="regenerate one comparison only")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "llama-vs-cogvlm"):
        write("llama-vs-cogvlm", built_by_get_model("LLaMAModel"), built_by_get_model("CogVLMModel"),
              "SAT's LLaMAModel via get_model (tiny Namespace)", "CogVLMModel via get_model (same Namespace)")
    if args.only in (None, "chat-vs-grounding"):
        with tempfile.TemporaryDirectory(prefix="cogtrace-compare-") as tmp:
            work = Path(tmp)
            write("chat-vs-grounding", reported(CHAT, work), reported(TINY, work),
                  f"cogtrace report {CHAT}", f"cogtrace report {TINY}")
    if args.only in (None, "cogvlm-vs-cogagent"):
        with tempfile.TemporaryDirectory(prefix="cogtrace-compare-") as tmp:
            work = Path(tmp)
            write("cogvlm-vs-cogagent", built_only(CHAT, work), built_only(AGENT, work),
                  f"cogtrace report {CHAT} --build-only", f"cogtrace report {AGENT} --build-only")
    print(f"docs/comparisons regenerated in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
