#!/usr/bin/env python
"""Check our CogVLM against upstream CogVLM's own code, on a CPU, from a checkout you have.

    git clone https://github.com/THUDM/CogVLM /path/to/CogVLM      # once, on a machine with internet
    .venv/bin/python scripts/compare_upstream.py /path/to/CogVLM [-o out/upstream]

What it does, all on CPU and with no download:

1. builds upstream's ``utils.models.cogvlm_model.CogVLMModel`` through SAT's ``get_model``,
   under :func:`tracer.cogvlm.upstream.upstream_on_cpu` (CPU rotary, xformers stand-in)
   and under ``tracer.trace`` — the trace of *upstream's* construction and forward is
   written to ``-o`` (render it with ``cogtrace render``);
2. builds ``tracer.cogvlm.CogVLMModel`` from the same config and copies its seeded weights
   into upstream's model with ``load_state_dict(strict=True)`` — every key and shape must match;
3. runs both on the same image and prompt and compares the logits.

The config is the tiny ``cogvlm-base-224`` with one change upstream forces: its GLU adapter
hard-codes an input width of 1792 (``ImageMixin.in_features``), so the vision tower here is
1792 wide (1 layer) instead of 48. Exit status 0 when keys match and the logits agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = "tiny/cogvlm-base-224"
UPSTREAM_GLU_WIDTH = 1792  # utils/models/cogvlm_model.py: ImageMixin.in_features
QUERY = "What is in the image?"


def upstream_config(folder: Path) -> Path:
    """The tiny base-224 config, with the vision tower as wide as upstream's GLU requires."""
    from tracer.cogvlm.config import load_config

    values = json.loads(load_config(CONFIG).path.read_text(encoding="utf-8"))
    values["eva_args"].update(hidden_size=UPSTREAM_GLU_WIDTH, num_attention_heads=16, inner_hidden_size=15360,
                              num_layers=1)
    values["_shrunk"] += f" For scripts/compare_upstream.py: EVA hidden {UPSTREAM_GLU_WIDTH} (upstream's GLU), 1 layer."
    (folder / "model_config.json").write_text(json.dumps(values, indent=2), encoding="utf-8")
    return folder


def check_checkout(checkout: Path) -> None:
    if not (checkout / "utils" / "models" / "cogvlm_model.py").is_file():
        raise SystemExit(f"error: {checkout}: no utils/models/cogvlm_model.py; expected a checkout of THUDM/CogVLM")


def import_upstream(checkout: Path) -> type:
    """Upstream's CogVLMModel class. ``utils/models/__init__.py`` also imports CogAgent, which
    needs timm; only ``cogvlm_model`` (and what it imports) is loaded here."""
    check_checkout(checkout)
    sys.path.insert(0, str(checkout))
    import utils  # upstream's top-level package

    models = types.ModuleType("utils.models")
    models.__path__ = [str(checkout / "utils" / "models")]
    sys.modules["utils.models"] = models
    utils.models = models  # type: ignore[attr-defined]
    from utils.models.cogvlm_model import CogVLMModel as Upstream

    return Upstream  # type: ignore[no-any-return]


def _inputs(config: Any) -> dict[str, Any]:
    """The context forward of one chat turn on the sample picture, from the CogVLM adapter's builder."""
    from tracer.cogvlm.adapter import ADAPTER

    return ADAPTER.prompt_inputs(config, QUERY, max_length=512)


def compare(checkout: Path, out_dir: Path | None) -> dict[str, Any]:
    """Build, load and run both models; returns the facts printed by :func:`main`."""
    import torch
    from sat.arguments import update_args_with_file
    from sat.model.base_model import get_model

    import tracer
    from tracer.cogvlm.build import build_model, environment_args
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.upstream import upstream_on_cpu

    with tempfile.TemporaryDirectory(prefix="cogvlm-upstream-") as tmp:
        config = load_config(upstream_config(Path(tmp)))
        ours = build_model(config, device="cpu").model
        inputs = _inputs(config)
        with upstream_on_cpu(), tracer.trace(out_dir) as handle:
            Upstream = import_upstream(checkout)
            args = update_args_with_file(Upstream.get_args(), path=str(config.path))
            environment_args(args, device="cpu", skip_init=True)  # weights come from ours below
            upstream = get_model(args, Upstream).eval()
            upstream.load_state_dict(ours.state_dict(), strict=True)  # raises on any key or shape mismatch
            with torch.no_grad():
                theirs_logits = upstream(**inputs)[0]
        with torch.no_grad():
            our_logits = ours(**inputs)[0]
    trace = handle.trace
    assert trace is not None
    served = sorted({(e.data["model_path"] or "model", e.name, e.data["served_by"], e.data["mixin_class"] or "")
                     for e in trace.of("hook")})
    return {
        "upstream_class": f"{Upstream.__module__}.{Upstream.__qualname__}",
        "keys": len(ours.state_dict()),
        "parameters": sum(p.numel() for p in ours.parameters()),
        "logits_shape": tuple(our_logits.shape),
        "max_abs_difference": float((our_logits - theirs_logits).abs().max()),
        "max_abs_logit": float(our_logits.abs().max()),
        "bit_identical": bool(torch.equal(our_logits, theirs_logits)),
        "construction_events": sum(1 for _ in trace.of("construction")),
        "hook_dispatches": sum(1 for _ in trace.of("hook")),
        "served": served,
        "trace_files": {k: str(v) for k, v in handle.paths.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a checkout of github.com/THUDM/CogVLM (the folder holding utils/)")
    parser.add_argument("-o", "--out", type=Path, default=None, help="write the trace of upstream's run here")
    parser.add_argument("--atol", type=float, default=1e-5, help="largest logit difference accepted (default 1e-5)")
    args = parser.parse_args(argv)
    check_checkout(args.checkout)  # before the imports and builds, which take seconds
    facts = compare(args.checkout, args.out)
    print(f"upstream class: {facts['upstream_class']}")
    print(f"state dict: {facts['keys']} keys, {facts['parameters']:,} parameters, strict load OK")
    print(f"logits {list(facts['logits_shape'])}: max |ours - upstream| = {facts['max_abs_difference']:.3g} "
          f"(largest logit {facts['max_abs_logit']:.3g}); bit-identical: {facts['bit_identical']}")
    print(f"upstream traced: {facts['construction_events']} construction calls, "
          f"{facts['hook_dispatches']} hook dispatches")
    for model, hook, served_by, mixin_class in facts["served"]:
        print(f"  {model:<22} {hook:<28} {served_by:<16} {mixin_class}")
    for path in facts["trace_files"].values():
        print(f"wrote {path}")
    return 0 if facts["max_abs_difference"] <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
