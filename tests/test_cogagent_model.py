"""CogAgent's parameter names and shapes must be upstream's, key for key, so its checkpoints load.

The expected table is derived here from upstream's code, not from our model: CogVLM's table
(``test_parameter_names``: LLaMA, the EVA2-CLIP-E tower, GLU, boi/eoi, vision experts) at
CogAgent's 224 px tower (257 positions), plus what ``utils/models/cogagent_model.py`` and
``eva_clip_L_hf.py`` add — the ``eva`` position table ``(image_length, 1792)``, the
``encoder`` mixin (``ExternalVisionModel``: ``pos_embed`` ``((1120/14)^2, 1024)`` and ``vit``,
an ``Eva2LargeEncoder`` whose ``model`` is EVA2-CLIP-L: patch 14, width 1024, 24 blocks, SwiGLU
``int(1024 * 2.6667)``, q/k/v projections with q and v biases, sub-LayerNorms, a rotary table
shared by every block, ``norm`` and a 768-wide ``head``) — and SAT's ``transformer.py``
(``is_decoder``: a ``CrossAttention`` of ``query`` / ``key_value`` / ``dense`` and a
``post_cross_attention_layernorm`` per layer, bias-free as ``use_bias`` is false).
Full-size models are built on the meta device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from test_parameter_names import Arch, expected_shapes

from tracer.cogagent.build import build_model
from tracer.cogagent.config import load_config


@dataclass(frozen=True)
class CrossArch:
    """The numbers the high-resolution branch's shapes follow (published CogAgent-18B by default)."""

    lm: Arch = Arch(eva_seq=1 + 16 * 16)  # 224 px low-res tower: CLS + 256 patches
    image_length: int = 256
    cross_pix: int = 1120
    width: int = 1024  # EVA2-CLIP-L
    blocks: int = 24
    head_width: int = 64
    mlp: int = int(1024 * 2.6667)
    patch: int = 14
    head_out: int = 768
    cross_head: int = 32  # cross_hidden_size_per_attention_head


FULL = CrossArch()


def agent_shapes(a: CrossArch) -> dict[str, tuple[int, ...]]:
    s = expected_shapes(a.lm)
    h, heads = a.lm.hidden, a.lm.heads
    s["mixins.eva.pos_embed"] = (a.image_length, a.lm.eva_hidden)
    inner = heads * a.cross_head  # SAT CrossAttention: num_attention_heads * head size
    for n in range(a.lm.layers):
        p = f"transformer.layers.{n}."
        s[p + "cross_attention.query.weight"] = (inner, h)
        s[p + "cross_attention.key_value.weight"] = (2 * inner, a.width)
        s[p + "cross_attention.dense.weight"] = (h, inner)
        s[p + "post_cross_attention_layernorm.weight"] = (h,)
    patches = (a.cross_pix // a.patch) ** 2
    w = a.width
    s["mixins.encoder.pos_embed"] = (patches, w)
    m = "mixins.encoder.vit.model."
    s[m + "cls_token"] = (1, 1, w)
    s[m + "pos_embed"] = (1, patches + 1, w)
    s[m + "patch_embed.proj.weight"] = (w, 3, a.patch, a.patch)
    s[m + "patch_embed.proj.bias"] = (w,)
    rope = (patches, a.head_width)  # buffers: registered once, reachable from the model and every block
    s[m + "rope.freqs_cos"] = s[m + "rope.freqs_sin"] = rope
    for n in range(a.blocks):
        b = f"{m}blocks.{n}."
        for norm in ("norm1", "norm2", "attn.inner_attn_ln"):
            s[b + norm + ".weight"] = s[b + norm + ".bias"] = (w,)
        s[b + "attn.q_bias"] = s[b + "attn.v_bias"] = (w,)
        for proj in ("q_proj", "k_proj", "v_proj"):
            s[b + f"attn.{proj}.weight"] = (w, w)
        s[b + "attn.proj.weight"] = (w, w)
        s[b + "attn.proj.bias"] = (w,)
        s[b + "attn.rope.freqs_cos"] = s[b + "attn.rope.freqs_sin"] = rope
        s[b + "mlp.w1.weight"] = s[b + "mlp.w2.weight"] = (a.mlp, w)
        s[b + "mlp.w1.bias"] = s[b + "mlp.w2.bias"] = (a.mlp,)
        s[b + "mlp.ffn_ln.weight"] = s[b + "mlp.ffn_ln.bias"] = (a.mlp,)
        s[b + "mlp.w3.weight"] = (w, a.mlp)
        s[b + "mlp.w3.bias"] = (w,)
    s[m + "norm.weight"] = s[m + "norm.bias"] = (w,)
    s[m + "head.weight"] = (a.head_out, w)
    s[m + "head.bias"] = (a.head_out,)
    return s


def built_shapes(spec: str, device: str = "meta") -> dict[str, tuple[int, ...]]:
    model = build_model(spec, device=device).model
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


@pytest.mark.parametrize("name", ["cogagent-chat", "cogagent-vqa"])
def test_full_model_has_exactly_upstreams_keys_and_shapes(name: str) -> None:
    built, expected = built_shapes(f"full/{name}"), agent_shapes(FULL)
    assert sorted(set(expected) - set(built)) == []  # nothing missing
    assert sorted(set(built) - set(expected)) == []  # nothing extra
    assert {k: v for k, v in built.items() if expected[k] != v} == {}
    assert len(built) == 1848


def test_published_parameter_count_and_split() -> None:
    """CogAgent-18B: "11 billion visual and 7 billion language parameters". Visual = both image
    branches (tower, adapter, position tables, encoder), the vision experts and the cross-attention."""
    model = build_model("full/cogagent-chat", device="meta").model
    params = dict(model.named_parameters())
    visual = {n for n in params if n.startswith(("mixins.eva.", "mixins.encoder.")) or ".vision_" in n
              or "cross_attention" in n}  # the cross-attention and its layernorm
    count = {n: p.numel() for n, p in params.items()}
    assert sum(count.values()) == 18_291_033_280
    assert sum(count[n] for n in visual) == 11_552_617_664
    assert sum(count[n] for n in params if n not in visual) == 6_738_415_616
    assert sum(count[n] for n in params if n.startswith("mixins.encoder.")) == 316_950_208


def test_tiny_builds_have_the_same_names_at_small_widths() -> None:
    values = load_config("tiny/cogagent-chat").values
    eva, cross = values["eva_args"], values["cross_vision_args"]
    lm = Arch(layers=values["num_layers"], hidden=values["hidden_size"], heads=values["num_attention_heads"],
              inner=values["inner_hidden_size"], vocab=values["vocab_size"], eva_layers=eva["num_layers"],
              eva_hidden=eva["hidden_size"], eva_inner=eva["inner_hidden_size"], eva_seq=1 + 16 * 16)
    tiny = CrossArch(lm=lm, width=cross["width"], blocks=cross["layers"], head_width=cross["head_width"],
                     mlp=int(cross["width"] * cross["mlp_ratio"]), head_out=cross["embed_dim"],
                     cross_head=values["cross_hidden_size_per_attention_head"])
    assert values["cross_image_pix"] == 1120 and values["image_length"] == 256  # the real geometry
    assert built_shapes("tiny/cogagent-chat", device="cpu") == agent_shapes(tiny)


def test_num_layers_override_trims_is_decoder() -> None:
    shapes = build_model("full/cogagent-chat", device="meta", num_layers=2).model.state_dict()
    assert "transformer.layers.1.cross_attention.query.weight" in shapes
    assert "transformer.layers.2.cross_attention.query.weight" not in shapes
    assert agent_shapes(replace(FULL, lm=replace(FULL.lm, layers=2))).keys() == shapes.keys()


def test_sat_entry_points_load_cogagent(tmp_path: Path) -> None:
    """``get_model`` (build), then SAT's ``from_pretrained`` and ``AutoModel`` on a checkpoint in SAT's layout."""
    from sat.model import AutoModel

    from tracer.cogagent.model import CogAgentModel
    from tracer.cogvlm.checkpoint import loader_args

    built = build_model("tiny/cogagent-chat", seed=7).model
    folder = tmp_path / "cogagent-tiny"
    (folder / "1").mkdir(parents=True)
    (folder / "model_config.json").write_text(load_config("tiny/cogagent-chat").path.read_text())
    (folder / "latest").write_text("1")
    torch.save({"module": built.state_dict()}, folder / "1" / "mp_rank_00_model_states.pt")
    expected = built.state_dict()
    for loader in (CogAgentModel.from_pretrained, AutoModel.from_pretrained):
        model, args = loader(str(folder), args=loader_args(seed=3))
        assert type(model) is CogAgentModel and args.cross_image_pix == 1120
        got = model.state_dict()
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
    assert json.loads((folder / "model_config.json").read_text())["model_class"] == "CogAgentModel"


def test_tiny_logits_are_finite() -> None:
    """Seeded, not ``skip_init``: upstream's vision-expert mixins skip initialisation (NaN logits when tiny)."""
    from PIL import Image

    from tracer.cogagent.chat import forward_inputs, pipeline_for_config
    from tracer.cogvlm import SAMPLE_IMAGE

    model = build_model("tiny/cogagent-chat").model
    inputs = forward_inputs(pipeline_for_config("tiny/cogagent-chat"), Image.open(SAMPLE_IMAGE).convert("RGB"),
                            "What is on the screen?")
    with torch.no_grad():
        logits = model(**inputs)[0]
    assert logits.shape == (1, inputs["input_ids"].shape[1], 2048) and torch.isfinite(logits).all()
