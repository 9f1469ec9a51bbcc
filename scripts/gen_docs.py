"""Regenerate the diagrams in ``docs/diagrams/`` (``make docs`` runs this, then gen_breakpoints.py).

Two traces, both through the toolkit's own commands, so the pictures are exactly what a user
gets from the CLI:

* ``tiny``: ``cogtrace report configs/tiny/cogvlm-grounding-generalist`` — construction through
  ``from_pretrained`` + ``load_checkpoint`` and one chat turn on CPU (real values);
* ``full``: ``cogtrace shapes configs/full/cogvlm-grounding-generalist`` — the 17.6B model built
  on the meta device and one context forward at full width (real shapes, no memory);
* ``cogagent``: ``cogtrace report configs/tiny/cogagent-chat`` — CogAgent's two image branches,
  its cross-attention and the high-res encoder at every generation step (``cross.txt``).

For each, the renderers in :mod:`tracer.render` write the construction call graph, the module
tree and the architecture diagram (DOT source, SVG, PNG), the token layout (PNG and text) and
the text views. Everything volatile is kept out so that a rerun on the same versions gives the
same files: no timings, and absolute paths (this checkout, site-packages) are made relative.

The full-size trace holds no tokenizer (the real one is vicuna-7b-v1.5, not shipped), so its
token layout is drawn with the tiny tokenizer's text pieces; the positions, masks and the 1225
image slots are the same for both models.

Run:  python scripts/gen_docs.py [--only tiny|full|cogagent] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DIAGRAMS = REPO / "docs" / "diagrams"
TINY = "configs/tiny/cogvlm-grounding-generalist"
FULL = "configs/full/cogvlm-grounding-generalist"
QUERY = "Where is the red square? Answer with its box."
COGAGENT = "configs/tiny/cogagent-chat"
COGAGENT_QUERY = "What is on the screen?"


def relative_paths(text: str) -> str:
    """Drop this checkout's and site-packages' absolute prefixes, and name the checkpoint cache
    by its role: all three are machine-specific."""
    from tracer.cogvlm.checkpoint import cache_root

    text = text.replace(str(cache_root()), "<cogtrace cache>")
    for prefix in (sysconfig.get_paths()["purelib"], str(REPO)):
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text


def cli(*argv: str) -> None:
    """Run one ``cogtrace`` command in this process; a non-zero exit stops the script."""
    from tracer import cli as cogtrace

    print(f"$ cogtrace {' '.join(argv)}", flush=True)
    code = cogtrace.main(list(argv))
    if code:
        raise SystemExit(f"cogtrace {argv[0]} failed with exit code {code}")


def load_trace(path: Path) -> Any:
    from tracer.commands.render import load_trace as load  # one-line errors for a bad file

    return load(path)


def tiny_layout(image_length: int) -> dict[str, list[Any]]:
    """``meta['token_layout']`` for QUERY with the tiny tokenizer and ``image_length`` slots."""
    from tracer.cogvlm.adapter import ADAPTER
    from tracer.cogvlm.text_processor import TextProcessor
    from tracer.cogvlm.tokenizer import load_tokenizer

    processor = TextProcessor(load_tokenizer(None, "base"), max_length=4096, image_length=image_length)
    return ADAPTER.prompt_layout(processor, processor.history_to_prompt(QUERY))


def write_views(trace: Any, dest: Path, layout: Any | None = None) -> list[Path]:
    """The diagrams and text views of ``trace`` into ``dest`` (replaced as a whole)."""
    from tracer.cogvlm.tokens import layout_png, render_layout_text
    from tracer.render.calls import render_calls
    from tracer.render.diagrams import to_png, to_svg
    from tracer.render.hooks import render_hooks
    from tracer.render.modules import render_modules
    from tracer.render.registry import TextOptions, views_for
    from tracer.render.steps import render_steps

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    written: list[Path] = []

    def put(name: str, data: str | bytes) -> None:
        path = dest / name
        if isinstance(data, str):
            path.write_text(relative_paths(data).rstrip("\n") + "\n", encoding="utf-8")
        else:
            path.write_bytes(data)
        written.append(path)

    views = views_for(trace)
    for name in ("calls", "modules", "architecture"):
        make_dot = views[name].dot
        assert make_dot is not None
        dot = relative_paths(make_dot(trace))
        put(f"{name}.dot", dot)  # put() makes paths relative again: a no-op on this text
        put(f"{name}.svg", to_svg(dot))
        put(f"{name}.png", to_png(dot))
    source = layout if layout is not None else trace
    tokens = views["tokens"]  # a model's own tokens view may add to the layout (CogAgent: the cross grid)
    put("tokens.png", tokens.png(trace) if layout is None and tokens.png else layout_png(source))
    put("tokens.txt", tokens.render_text(trace, TextOptions(width=160)) if layout is None and tokens.text
        else render_layout_text(source, width=160))
    put("calls.txt", render_calls(trace, width=160, timings=False))
    put("modules.txt", render_modules(trace, width=160))
    put("hooks.txt", render_hooks(trace, width=160))
    if any(e.category == "generation" for e in trace.events):
        put("steps.txt", render_steps(trace, width=160, timings=False))
        if "cross" in views:
            put("cross.txt", views["cross"].render_text(trace))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=["tiny", "full", "cogagent"], default=None, help="regenerate one set only")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the raw traces and reports in DIR (default: a temporary folder, removed)")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="cogtrace-docs-"))
    start = time.perf_counter()
    try:
        if args.only in (None, "tiny"):
            cli("report", TINY, "--query", QUERY, "-o", str(work / "tiny"))
            written = write_views(load_trace(work / "tiny" / "trace.json"), DIAGRAMS / "tiny")
            print(f"tiny: {len(written)} files in {DIAGRAMS / 'tiny'}")
        if args.only in (None, "full"):
            cli("shapes", FULL, "-o", str(work / "full"))
            from tracer.cogvlm.config import load_config

            layout = tiny_layout(int(load_config(FULL).values["image_length"]))
            written = write_views(load_trace(work / "full" / "trace.json"), DIAGRAMS / "full", layout=layout)
            print(f"full: {len(written)} files in {DIAGRAMS / 'full'}")
        if args.only in (None, "cogagent"):
            cli("report", COGAGENT, "--query", COGAGENT_QUERY, "--max-new-tokens", "4", "-o", str(work / "cogagent"))
            written = write_views(load_trace(work / "cogagent" / "trace.json"), DIAGRAMS / "cogagent")
            print(f"cogagent: {len(written)} files in {DIAGRAMS / 'cogagent'}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"docs/diagrams regenerated in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
