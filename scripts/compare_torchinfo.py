#!/usr/bin/env python
"""Measure what torchinfo shows and misses on a SAT model, next to cogtrace; print Markdown.

    .venv/bin/python scripts/compare_torchinfo.py                  # print the measurements
    .venv/bin/python scripts/compare_torchinfo.py --write docs/torchinfo-vs-cogtrace.md

``--write`` replaces the block between ``<!-- measured:begin -->`` and
``<!-- measured:end -->`` in that file, so the page's numbers always come from a run of this
script (on the tiny grounding config, the sample image and one grounding prompt), never from
memory. The measuring itself is ``tracer.commands.summary.measure`` — the same code behind
``cogtrace summary``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"


def markdown(config: str) -> str:
    import torch
    import torchinfo

    from tracer.commands.summary import QUERY, measure

    with contextlib.redirect_stderr(io.StringIO()):
        c = measure(config)
    rows = [
        ("SAT hook dispatches recorded", "0 rows (a hook is a function, not a module)",
         f"{c.hook_dispatches}, each with the mixin that served it: "
         + ", ".join(f"{k} {v}" for k, v in c.hook_dispatches_by_mixin.items())),
        ("rows marked `(recursive)`", f"{c.torchinfo_recursive_rows} of {c.torchinfo_rows} rows", "—"),
        ("layers run by a hook instead of their own `forward`",
         f"listed with no shapes: {len(c.layers_without_shapes)} "
         f"({', '.join(f'`{p}`' for p in c.layers_without_shapes)})",
         "shapes of the hook dispatch that ran in their place"),
        ("vision-expert weights → the layer they served", "not shown (rows appear under the mixin, "
         "interleaved with `(recursive)` re-entries of the language layer)",
         f"{len(c.expert_attributions)} (weights, layer) pairs, e.g. `{c.expert_attributions[0][0]}` → "
         f"`{c.expert_attributions[0][1]}`" if c.expert_attributions else "none"),
        ("token routing (vision / language expert) in layer 0's `mlp_forward`", "only the two Linear input shapes",
         f"{c.vision_tokens} vision, {c.language_tokens} language tokens"),
        ("modules with parameters absent on a text-only forward",
         f"{len(c.text_only_missing)} modules, {c.text_only_missing_params:,} parameters not listed",
         "all listed in the module tree, with 0 calls"),
        ("construction calls (`get_model`, `__init__`s, `add_mixin`, `del_mixin` …)", "0",
         f"{c.construction_calls}, of which {c.mixin_calls} `add_mixin`/`del_mixin` with hook-table changes"),
        ("total parameters reported", f"{c.torchinfo_total_params:,}",
         f"{c.cogtrace_total_params:,} (= `sum(p.numel() for p in model.parameters())`)"),
        ("the model's own input dict (with `vision_position_ids=None`)",
         f"raises `{c.torchinfo_none_kwarg_error.splitlines()[0]}`" if c.torchinfo_none_kwarg_error else "works",
         "recorded as given"),
    ]
    lines = [
        BEGIN,
        f"Measured with `scripts/compare_torchinfo.py` on `{config}` (torch {torch.__version__}, "
        f"torchinfo {torchinfo.__version__}): one context forward with the sample image and the prompt "
        f"\"{QUERY}\" ({c.vision_tokens + c.language_tokens} positions: {c.vision_tokens} for the vision expert "
        f"(boi + image tokens), {c.language_tokens} for the language expert).",
        "",
        "| what | torchinfo.summary | cogtrace |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c_} |" for a, b, c_ in rows],
        END,
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny/cogvlm-grounding-generalist")
    parser.add_argument("--write", metavar="FILE", help="replace the measured block in this Markdown file")
    args = parser.parse_args()
    block = markdown(args.config)
    if not args.write:
        print(block)
        return 0
    path = Path(args.write)
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"{path}: no {BEGIN} … {END} block to replace", file=sys.stderr)
        return 1
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    from tracer.files import write_atomic

    write_atomic(path, head + block + tail)  # a hand-edited page: never leave it half-written
    print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
