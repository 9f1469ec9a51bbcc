#!/usr/bin/env python
"""Check our CogAgent against upstream CogAgent's own code, on a CPU, from a checkout you have.

    git clone https://github.com/THUDM/CogVLM /path/to/CogVLM      # once, on a machine with internet
    .venv/bin/python scripts/compare_upstream_cogagent.py /path/to/CogVLM [-o out/upstream-cogagent]

The twin of ``compare_upstream.py`` for ``utils.models.cogagent_model.CogAgentModel``: builds
upstream's class through SAT's ``get_model`` under :func:`tracer.cogagent.upstream.agent_upstream_on_cpu`
(CPU rotary, xformers and timm stand-ins) and ``tracer.trace`` (written to ``-o``), loads our
seeded weights into it with ``load_state_dict(strict=True)``, runs both on the same picture
(224 px low-res, high-res copy) and prompt, and compares the logits.

The config is the tiny ``cogagent-chat`` with what upstream hard-codes: the low-res tower 1792
wide (1 layer; ``ImageMixin`` fixes 1792) and the high-res encoder at EVA2-CLIP-L's full
1024 x 24 blocks (``Eva2LargeEncoder`` fixes them); the high-res image is 224 px (256 cross
tokens) instead of 1120 so one forward of that 300M-parameter encoder takes seconds.
Exit status 0 when the keys match and the logits agree.
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

CONFIG = "tiny/cogagent-chat"
UPSTREAM_EVA_WIDTH = 1792  # cogagent_model.py: ImageMixin.in_features and pos_embed
UPSTREAM_CROSS_WIDTH = 1024  # cogagent_model.py: ExternalVisionModel.pos_embed; eva_clip_L_hf.py: width
COMPARE_CROSS_PIX = 224
QUERY = "What is on the screen?"


def upstream_config(folder: Path) -> Path:
    from tracer.cogagent.config import load_config

    values = json.loads(load_config(CONFIG).path.read_text(encoding="utf-8"))
    values["eva_args"].update(hidden_size=UPSTREAM_EVA_WIDTH, num_attention_heads=16, inner_hidden_size=15360,
                              num_layers=1)
    del values["cross_vision_args"]  # upstream's EVA2-CLIP-L: 1024 wide, 24 blocks, patch 14
    values.update(cross_attn_hidden_size=UPSTREAM_CROSS_WIDTH, cross_image_pix=COMPARE_CROSS_PIX)
    values["_shrunk"] += (f" For scripts/compare_upstream_cogagent.py: EVA hidden {UPSTREAM_EVA_WIDTH} (1 layer), "
                          f"EVA2-CLIP-L unshrunk, high-res image {COMPARE_CROSS_PIX} px.")
    (folder / "model_config.json").write_text(json.dumps(values, indent=2), encoding="utf-8")
    return folder


def check_checkout(checkout: Path) -> None:
    if not (checkout / "utils" / "models" / "cogagent_model.py").is_file():
        raise SystemExit(f"error: {checkout}: no utils/models/cogagent_model.py; expected a checkout of THUDM/CogVLM")


def import_upstream(checkout: Path) -> type:
    """Upstream's CogAgentModel, loaded without ``utils/models/__init__.py`` (which imports both models)."""
    check_checkout(checkout)
    sys.path.insert(0, str(checkout))
    import utils  # upstream's top-level package

    models = types.ModuleType("utils.models")
    models.__path__ = [str(checkout / "utils" / "models")]
    sys.modules["utils.models"] = models
    utils.models = models  # type: ignore[attr-defined]
    from utils.models.cogagent_model import CogAgentModel as Upstream

    return Upstream  # type: ignore[no-any-return]


def compare(checkout: Path, out_dir: Path | None) -> dict[str, Any]:
    import torch
    from PIL import Image
    from sat.arguments import update_args_with_file
    from sat.model.base_model import get_model

    import tracer
    from tracer.cogagent.build import build_model
    from tracer.cogagent.chat import forward_inputs, pipeline_for_config
    from tracer.cogagent.config import load_config
    from tracer.cogagent.upstream import agent_upstream_on_cpu
    from tracer.cogvlm import SAMPLE_IMAGE
    from tracer.cogvlm.build import environment_args

    with tempfile.TemporaryDirectory(prefix="cogagent-upstream-") as tmp:
        config = load_config(upstream_config(Path(tmp)))
        ours = build_model(config, device="cpu").model
        inputs = forward_inputs(pipeline_for_config(config), Image.open(SAMPLE_IMAGE).convert("RGB"), QUERY)
        with agent_upstream_on_cpu(), tracer.trace(out_dir) as handle:
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
    cross = [e for e in trace.of("hook") if e.name == "cross_attention_forward"]
    return {
        "upstream_class": f"{Upstream.__module__}.{Upstream.__qualname__}",
        "keys": len(ours.state_dict()),
        "parameters": sum(p.numel() for p in ours.parameters()),
        "logits_shape": tuple(our_logits.shape),
        "max_abs_difference": float((our_logits - theirs_logits).abs().max()),
        "max_abs_logit": float(our_logits.abs().max()),
        "bit_identical": bool(torch.equal(our_logits, theirs_logits)),
        "cross_dispatches": [(e.data["layer_id"], e.data["served_by"]) for e in cross],
        "encoder_runs": sum(1 for e in trace.of("module") if e.name == "mixins.encoder"),
        "trace_files": {k: str(v) for k, v in handle.paths.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a checkout of github.com/THUDM/CogVLM (the folder holding utils/)")
    parser.add_argument("-o", "--out", type=Path, default=None, help="write the trace of upstream's run here")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest logit difference accepted (default 1e-4)")
    args = parser.parse_args(argv)
    check_checkout(args.checkout)
    facts = compare(args.checkout, args.out)
    print(f"upstream class: {facts['upstream_class']}")
    print(f"state dict: {facts['keys']} keys, {facts['parameters']:,} parameters, strict load OK")
    print(f"logits {list(facts['logits_shape'])}: max |ours - upstream| = {facts['max_abs_difference']:.3g} "
          f"(largest logit {facts['max_abs_logit']:.3g}); bit-identical: {facts['bit_identical']}")
    print(f"upstream traced: high-res encoder ran {facts['encoder_runs']} time(s); cross_attention_forward "
          f"dispatches (layer, served by): {facts['cross_dispatches']}")
    for path in facts["trace_files"].values():
        print(f"wrote {path}")
    return 0 if facts["max_abs_difference"] <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
