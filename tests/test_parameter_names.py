"""Parameter names and shapes must be upstream CogVLM's, key for key, so real checkpoints load.

The expected table is derived here from first principles, not from our model:
upstream's ``utils/models/cogvlm_model.py`` / ``mixin.py`` (mixin names, 32 vision-expert
layers, GLU adapter, boi/eoi) and SAT's ``transformer.py`` (``BaseTransformer`` layer
names; biases only where ``use_bias``), ``llama_model.py`` (RMSNorm without bias, no
position embeddings, ``lm_head``, ``gate_proj``) and ``eva_clip_model.py`` / ``vit_model.py``
(Conv2d ``patch_embedding.proj``, learned position embeddings, no final layernorm).
Full-size models are built on the meta device: about a second, no memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from tracer.cogvlm.build import build_model
from tracer.cogvlm.config import load_config


@dataclass(frozen=True)
class Arch:
    """The numbers that decide every shape (published CogVLM-17B values by default)."""

    layers: int = 32
    hidden: int = 4096
    heads: int = 32
    inner: int = 11008
    vocab: int = 32000
    eva_layers: int = 63
    eva_hidden: int = 1792
    eva_inner: int = 15360
    eva_seq: int = 1 + 35 * 35  # CLS + (490 / 14)^2 patches
    patch: int = 14
    vision_layers: int = 32  # upstream: num_vision_layers=32, clipped to num_layers


FULL = Arch()
BASE_224 = Arch(eva_seq=1 + 16 * 16)
ARTICLE = Arch(layers=2)


def expected_shapes(a: Arch) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry of upstream CogVLM built with ``a``, with its shape."""
    h, i, e, ei = a.hidden, a.inner, a.eva_hidden, a.eva_inner
    s: dict[str, tuple[int, ...]] = {"transformer.word_embeddings.weight": (a.vocab, h)}
    for n in range(a.layers):  # LLaMA layers: RMSNorm (weight only), bias-free linears
        p = f"transformer.layers.{n}."
        s[p + "input_layernorm.weight"] = (h,)
        s[p + "attention.query_key_value.weight"] = (3 * h, h)
        s[p + "attention.dense.weight"] = (h, h)
        s[p + "post_attention_layernorm.weight"] = (h,)
        s[p + "mlp.dense_h_to_4h.weight"] = (i, h)
        s[p + "mlp.dense_4h_to_h.weight"] = (h, i)
    s["transformer.final_layernorm.weight"] = (h,)
    s["mixins.lm.lm_head.weight"] = (a.vocab, h)

    # Vision tower: SAT EVA2CLIPModel, LayerNorm and linears with biases, no final layernorm.
    v = "mixins.eva.vit_model."
    s[v + "mixins.patch_embedding.proj.weight"] = (e, 3, a.patch, a.patch)
    s[v + "mixins.patch_embedding.proj.bias"] = (e,)
    s[v + "transformer.word_embeddings.weight"] = (1, e)  # vocab_size 1: the CLS token
    s[v + "transformer.position_embeddings.weight"] = (a.eva_seq, e)
    for n in range(a.eva_layers):
        p = f"{v}transformer.layers.{n}."
        for norm in ("input_layernorm", "post_attention_layernorm"):
            s[p + norm + ".weight"] = (e,)
            s[p + norm + ".bias"] = (e,)
        s[p + "attention.query_key_value.weight"] = (3 * e, e)
        s[p + "attention.query_key_value.bias"] = (3 * e,)
        s[p + "attention.dense.weight"] = (e, e)
        s[p + "attention.dense.bias"] = (e,)
        s[p + "mlp.dense_h_to_4h.weight"] = (ei, e)
        s[p + "mlp.dense_h_to_4h.bias"] = (ei,)
        s[p + "mlp.dense_4h_to_h.weight"] = (e, ei)
        s[p + "mlp.dense_4h_to_h.bias"] = (e,)
    # GLU adapter EVA width -> LM width, and the image frame tokens.
    g = "mixins.eva.linear_proj."
    s[g + "linear_proj.weight"] = (h, e)
    s[g + "norm1.weight"] = (h,)
    s[g + "norm1.bias"] = (h,)
    s[g + "dense_h_to_4h.weight"] = (i, h)
    s[g + "gate_proj.weight"] = (i, h)
    s[g + "dense_4h_to_h.weight"] = (h, i)
    s["mixins.eva.boi"] = (1, 1, h)
    s["mixins.eva.eoi"] = (1, 1, h)

    # Vision-expert FFN: the language gate for every layer, three expert weights per vision layer.
    for n in range(a.layers):
        s[f"mixins.mlp.gate_proj.{n}.weight"] = (i, h)
    vision = range(min(a.vision_layers, a.layers))
    for n in vision:
        s[f"mixins.mlp.vision_dense_h_to_4h_list.{n}.weight"] = (i, h)
        s[f"mixins.mlp.vision_dense_4h_to_h_list.{n}.weight"] = (h, i)
        s[f"mixins.mlp.vision_gate_proj.{n}.weight"] = (i, h)
    # Vision-expert attention, plus the rotary embedding's persistent inv_freq buffer.
    s["mixins.rotary.rotary_emb.inv_freq"] = (h // a.heads // 2,)
    for n in vision:
        s[f"mixins.rotary.vision_query_key_value_list.{n}.weight"] = (3 * h, h)
        s[f"mixins.rotary.vision_dense_list.{n}.weight"] = (h, h)
    return s


def expected_parameters(a: Arch) -> int:
    shapes = expected_shapes(a)
    del shapes["mixins.rotary.rotary_emb.inv_freq"]  # a buffer, not a parameter
    total = 0
    for shape in shapes.values():
        count = 1
        for dim in shape:
            count *= dim
        total += count
    return total


def built_shapes(spec: str, device: str = "meta") -> dict[str, tuple[int, ...]]:
    model = build_model(spec, device=device).model
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


@pytest.fixture(scope="module")
def full_shapes() -> dict[str, tuple[int, ...]]:
    return built_shapes("full/cogvlm-grounding-generalist")


def test_full_model_has_exactly_upstreams_keys_and_shapes(full_shapes: dict[str, tuple[int, ...]]) -> None:
    expected = expected_shapes(FULL)
    assert sorted(set(expected) - set(full_shapes)) == []  # nothing missing
    assert sorted(set(full_shapes) - set(expected)) == []  # nothing extra
    assert {k: v for k, v in full_shapes.items() if expected[k] != v} == {}


@pytest.mark.parametrize(("key", "shape"), [
    ("mixins.eva.linear_proj.linear_proj.weight", (4096, 1792)),
    ("mixins.mlp.vision_dense_h_to_4h_list.0.weight", (11008, 4096)),
    ("mixins.rotary.vision_query_key_value_list.31.weight", (12288, 4096)),
    ("mixins.rotary.vision_dense_list.31.weight", (4096, 4096)),
    ("mixins.eva.boi", (1, 1, 4096)),
    ("mixins.eva.eoi", (1, 1, 4096)),
    ("transformer.layers.0.attention.query_key_value.weight", (12288, 4096)),
    ("transformer.layers.31.mlp.dense_4h_to_h.weight", (4096, 11008)),
    ("mixins.lm.lm_head.weight", (32000, 4096)),
    ("mixins.mlp.gate_proj.31.weight", (11008, 4096)),
    ("mixins.eva.vit_model.transformer.layers.62.mlp.dense_h_to_4h.weight", (15360, 1792)),
    ("mixins.eva.vit_model.transformer.layers.62.attention.query_key_value.bias", (5376,)),
    ("mixins.eva.vit_model.transformer.position_embeddings.weight", (1226, 1792)),
    ("mixins.eva.vit_model.mixins.patch_embedding.proj.weight", (1792, 3, 14, 14)),
    ("mixins.rotary.rotary_emb.inv_freq", (64,)),
])
def test_full_model_landmark_keys(full_shapes: dict[str, tuple[int, ...]], key: str, shape: tuple[int, ...]) -> None:
    assert full_shapes[key] == shape


def test_full_model_counts_per_prefix(full_shapes: dict[str, tuple[int, ...]]) -> None:
    def group(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:3]) if parts[0] == "mixins" else parts[0]

    counts = Counter(group(k) for k in full_shapes)
    assert counts == {
        "transformer": 1 + 32 * 6 + 1,  # embeddings, 6 tensors per layer, final norm
        "mixins.lm.lm_head": 1,
        "mixins.eva.vit_model": 2 + 2 + 63 * 12,  # patch proj w+b, CLS + positions, 12 per layer
        "mixins.eva.linear_proj": 6,
        "mixins.eva.boi": 1,
        "mixins.eva.eoi": 1,
        "mixins.mlp.gate_proj": 32,
        "mixins.mlp.vision_dense_h_to_4h_list": 32,
        "mixins.mlp.vision_dense_4h_to_h_list": 32,
        "mixins.mlp.vision_gate_proj": 32,
        "mixins.rotary.rotary_emb": 1,
        "mixins.rotary.vision_query_key_value_list": 32,
        "mixins.rotary.vision_dense_list": 32,
    }
    assert len(full_shapes) == 1156


def test_published_parameter_count() -> None:
    assert expected_parameters(FULL) == 17_639_685_376  # "CogVLM-17B"
    model = build_model("full/cogvlm-grounding-generalist", device="meta").model
    assert sum(p.numel() for p in model.parameters()) == 17_639_685_376


@pytest.mark.parametrize(("spec", "arch"), [
    ("full/cogvlm-base-224", BASE_224),
    ("full/cogvlm-chat-v1.1", FULL),
    ("article/cogvlm-grounding-generalist", ARTICLE),
])
def test_other_full_size_builds_match(spec: str, arch: Arch) -> None:
    assert built_shapes(spec) == expected_shapes(arch)


@pytest.mark.parametrize("name", ["cogvlm-chat-v1.1", "cogvlm-base-224", "cogvlm-base-490",
                                  "cogvlm-grounding-generalist"])
def test_tiny_builds_have_the_same_names_at_small_widths(name: str) -> None:
    cfg = load_config(f"tiny/{name}").values
    eva = cfg["eva_args"]
    patches = (eva["image_size"][0] // eva["patch_size"]) * (eva["image_size"][1] // eva["patch_size"])
    arch = Arch(layers=cfg["num_layers"], hidden=cfg["hidden_size"], heads=cfg["num_attention_heads"],
                inner=cfg["inner_hidden_size"], vocab=cfg["vocab_size"], eva_layers=eva["num_layers"],
                eva_hidden=eva["hidden_size"], eva_inner=eva["inner_hidden_size"], eva_seq=1 + patches,
                patch=eva["patch_size"])
    assert built_shapes(f"tiny/{name}", device="cpu") == expected_shapes(arch)
