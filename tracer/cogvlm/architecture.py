"""CogVLM's data flow, read off a trace: which stage ran, where its weights live, what shape came out.

The architecture diagram must show *this* run's numbers (1225 image tokens of width 48 for
the tiny config, 1792 wide for the full one), not numbers from a paper. Everything here is
derived from the trace: the module tree gives depths and parameter counts, module and hook
events give the shapes of the context forward (the first call of each module), and the
``branch`` facts of ``mlp_forward`` give the vision/language token split. A stage the trace
did not record (a construction-only trace has no shapes) keeps its place with '?' shapes,
so the picture always has the same skeleton.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..render.common import shape_of
from ..schema import Event, ModuleNode, Trace, shape_text

__all__ = ["Architecture", "Stage", "architecture"]

UNKNOWN = "?"


@dataclass(frozen=True)
class Stage:
    """One box of the diagram."""

    key: str
    title: str
    detail: str = ""
    where: str = ""  # module path holding the weights
    params: int = 0
    shape_in: str = UNKNOWN
    shape_out: str = UNKNOWN


@dataclass(frozen=True)
class Architecture:
    model_class: str
    stages: dict[str, Stage]
    vision_tokens: int | None = None  # routed to the vision experts in the context forward
    language_tokens: int | None = None
    sequence_length: int | None = None
    image_tokens: int | None = None
    expert_weights: tuple[str, ...] = field(default_factory=tuple)
    total_parameters: int = 0
    vision_path: str = ""
    symbolic: bool = False  # no forward in the trace: shapes are symbols with widths from the weights


def _fmt(shape: tuple[int, ...] | None) -> str:
    return UNKNOWN if shape is None else shape_text(shape)


class _Facts:
    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.nodes: dict[str, ModuleNode] = {m.path: m for m in trace.modules}
        self.first_call: dict[str, Event] = {}
        for e in sorted(trace.of("module"), key=lambda e: (e.start_ns, e.id)):
            self.first_call.setdefault(str(e.data.get("path", e.name)), e)
        self.first_hook: dict[tuple[str, str], Event] = {}
        for e in sorted(trace.of("hook"), key=lambda e: (e.start_ns, e.id)):
            self.first_hook.setdefault((str(e.data.get("model_path", "")), str(e.data.get("hook", e.name))), e)

    def find(self, pattern: str, class_name: str | None = None) -> str | None:
        """The first module path (in tree order) matching a regex and, optionally, a class."""
        rx = re.compile(pattern)
        for m in self.trace.modules:
            if rx.search(m.path) and (class_name is None or m.class_name == class_name):
                return m.path
        return None

    def io(self, path: str | None, which: str, index: int = 0) -> tuple[int, ...] | None:
        event = self.first_call.get(path or "\0")
        if event is None:
            return None
        items = event.data.get(which) or []
        return shape_of(items[index]) if len(items) > index else None

    def hook_io(self, model_path: str, hook: str, which: str) -> tuple[int, ...] | None:
        event = self.first_hook.get((model_path, hook))
        items = (event.data.get(which) or []) if event else []
        return shape_of(items[0]) if items else None

    def layers(self, container: str) -> list[str]:
        prefix = container + "."
        return [m.path for m in self.trace.modules
                if m.path.startswith(prefix) and m.path[len(prefix):].isdigit()]

    def total(self, path: str | None) -> int:
        node = self.nodes.get(path or "\0")
        return node.total if node else 0


SYMBOLS = "B batch, N image tokens, S sequence, V vision-expert tokens (boi + image), T other tokens"


def _symbolic(f: _Facts, stages: dict[str, Stage], patch: str | None, words: str | None, head: str | None,
              first: str | None) -> dict[str, Stage]:
    """Shapes for a trace without a forward (a construction trace of the full model on meta):
    symbols for the sizes that depend on the input, numbers for the widths, which the weights
    fix. Every number comes from a recorded parameter shape."""
    def weight(path: str | None, index: int) -> str:
        node = f.nodes.get(path or "\0")
        shape = node.param_shapes.get("weight") if node else None
        return str(shape[index]) if shape and len(shape) > abs(index) else "?"

    eva, kernel = weight(patch, 0), weight(patch, -1)
    hidden, vocab = weight(words, 1), weight(head, 0)
    inner = weight(f"{first}.mlp.dense_h_to_4h" if first else None, 0)
    qkv = weight(f"{first}.attention.query_key_value" if first else None, 0)
    grid = f"H/{kernel}, W/{kernel}"
    shapes = {
        "image": ("?", "[B, 3, H, W]"), "patch": ("[B, 3, H, W]", f"[B, {eva}, {grid}]"),
        "cls": (f"[B, {eva}, {grid}]", f"[B, N+1, {eva}]"), "eva": (f"[B, N+1, {eva}]", f"[B, N+1, {eva}]"),
        "drop": (f"[B, N+1, {eva}]", f"[B, N, {eva}]"), "glu": (f"[B, N, {eva}]", f"[B, N, {hidden}]"),
        "frame": (f"[B, N, {hidden}]", f"[B, S, {hidden}]"), "text": ("[B, S]", f"[B, S, {hidden}]"),
        "lm": (f"[B, S, {hidden}]", f"[B, S, {hidden}]"),
        "attn_vis": (f"[V, {hidden}]", f"[V, {qkv}]"), "attn_lang": (f"[T, {hidden}]", f"[T, {qkv}]"),
        "mlp_vis": (f"[V, {hidden}]", f"[V, {inner}]"), "mlp_lang": (f"[T, {hidden}]", f"[T, {inner}]"),
        "head": (f"[B, S, {hidden}]", f"[B, S, {vocab}]"),
    }
    return {k: replace(st, shape_in=shapes[k][0], shape_out=shapes[k][1]) if k in shapes else st
            for k, st in stages.items()}


def architecture(trace: Trace) -> Architecture:
    """Collect the stages of CogVLM's forward pass that this trace can speak to."""
    f = _Facts(trace)
    root = f.nodes.get("")
    vision = f.find(r"(^|\.)vit_model$") or f.find(r".", "EVA2CLIPModel") or ""
    vp = vision + "." if vision else ""
    stages: dict[str, Stage] = {}

    patch = f.find(rf"^{re.escape(vp)}mixins\.patch_embedding\.proj$") or f.find(r"patch_embedding\.proj$")
    image = f.io(patch, "inputs")
    if image is None and vision in f.first_call:
        image = shape_of((f.first_call[vision].data.get("kwargs") or {}).get("image"))
    stages["image"] = Stage("image", "image", "RGB, resized and normalised", shape_out=_fmt(image))
    patch_node = f.nodes.get(patch or "\0")
    kernel = patch_node.param_shapes.get("weight") if patch_node else None
    stages["patch"] = Stage(
        "patch", "patch embedding", f"Conv2d {kernel[-2]}×{kernel[-1]}, stride {kernel[-1]}" if kernel else "Conv2d",
        patch or "", f.total(patch), _fmt(image), _fmt(f.io(patch, "outputs")))
    embedded = f.hook_io(vision, "word_embedding_forward", "outputs")
    stages["cls"] = Stage("cls", "flatten + CLS token + position embedding", "patches become a sequence",
                          f"{vp}transformer.position_embeddings", f.total(f"{vp}transformer.position_embeddings"),
                          _fmt(f.io(patch, "outputs")), _fmt(embedded))

    eva_layers = f.layers(f"{vp}transformer.layers")
    eva_out = f.hook_io(vision, "final_forward", "inputs")
    heads = ""
    if vision and eva_layers:
        qkv = f.nodes.get(f"{eva_layers[0]}.attention.query_key_value")
        if qkv and "weight" in qkv.param_shapes:
            heads = f", width {qkv.param_shapes['weight'][-1]}"
    stages["eva"] = Stage("eva", f"EVA2-CLIP layers ×{len(eva_layers)}", f"post-LayerNorm ViT{heads}",
                          f"{vp}transformer.layers", sum(f.total(p) for p in eva_layers), _fmt(embedded), _fmt(eva_out))
    dropped = f.hook_io(vision, "final_forward", "outputs")
    stages["drop"] = Stage("drop", "CLS dropped", "final_forward of mixin 'final': logits[:, 1:]",
                           f"{vp}mixins.final", 0, _fmt(eva_out), _fmt(dropped))

    glu = f.find(r".", "GLU") or f.find(r"(^|\.)eva\.linear_proj$")
    stages["glu"] = Stage("glu", "GLU adapter", "linear_proj → LayerNorm, GELU → SiLU-gated FFN", glu or "",
                          f.total(glu), _fmt(f.io(glu, "inputs")), _fmt(f.io(glu, "outputs")))

    owner = next((m for m in trace.modules if "boi" in m.param_shapes and "eoi" in m.param_shapes), None)
    boi = owner.param_shapes.get("boi") if owner else None
    embedding = f.hook_io("", "word_embedding_forward", "outputs")
    stages["frame"] = Stage("frame", "boi + image tokens + eoi, into the word embeddings",
                            f"boi, eoi: {_fmt(boi)} parameters", owner.path if owner else "",
                            2 * (boi[-1] if boi else 0), _fmt(f.io(glu, "outputs")), _fmt(embedding))
    text_in = f.hook_io("", "word_embedding_forward", "inputs")
    words = f.find(r"^transformer\.word_embeddings$")
    stages["text"] = Stage("text", "token ids → word embeddings", "BOS, text; image slots overwritten",
                           words or "", f.total(words), _fmt(text_in), _fmt(embedding))

    lm_layers = f.layers("transformer.layers")
    first = lm_layers[0] if lm_layers else None
    stages["lm"] = Stage("lm", f"language layers ×{len(lm_layers)}", "RMSNorm, rotary attention, gated SiLU FFN",
                         "transformer.layers", sum(f.total(p) for p in lm_layers),
                         _fmt(f.io(first, "inputs")), _fmt(f.io(first, "outputs")))

    vision_tokens = language_tokens = None
    expert_weights: list[str] = []
    for hook in ("attention_forward", "mlp_forward"):
        event = f.first_hook.get(("", hook))
        if event is None:
            continue
        branch: Mapping[str, Any] = event.data.get("branch") or {}
        if branch:
            vision_tokens = int(branch.get("vision_tokens", 0) or 0)
            language_tokens = int(branch.get("language_tokens", 0) or 0)
        expert_weights += [w for w in event.data.get("weights") or [] if w.startswith("mixins.")]
    # The expert split inside a language layer: boi + image tokens take the vision weights
    # (in mixins), text tokens the language weights (in the layer). Shapes of layer 0's
    # first call; parameters summed over all layers.
    att_v = f.find(r"^mixins\.\w+\.vision_query_key_value_list\.\d+$")
    att_l = f"{first}.attention.query_key_value" if first else None
    stages["attn_vis"] = Stage("attn_vis", "vision-expert QKV", "vision_query_key_value_list.N, vision_dense_list.N",
                               att_v.rsplit(".", 2)[0] if att_v else "",
                               f.total(att_v.rpartition(".")[0] if att_v else None)
                               + f.total(f.find(r"^mixins\.\w+\.vision_dense_list$")),
                               _fmt(f.io(att_v, "inputs")), _fmt(f.io(att_v, "outputs")))
    stages["attn_lang"] = Stage("attn_lang", "language QKV", "attention.query_key_value, attention.dense",
                                "transformer.layers.N.attention", sum(f.total(f"{p}.attention") for p in lm_layers),
                                _fmt(f.io(att_l, "inputs")), _fmt(f.io(att_l, "outputs")))
    mlp_v = f.find(r"^mixins\.\w+\.vision_dense_h_to_4h_list\.\d+$")
    mlp_parent = mlp_v.rsplit(".", 2)[0] if mlp_v else ""
    mlp_l = f"{first}.mlp.dense_h_to_4h" if first else None
    stages["mlp_vis"] = Stage("mlp_vis", "vision-expert FFN", "vision_dense_h_to_4h / vision_gate_proj / "
                              "vision_dense_4h_to_h", mlp_parent,
                              sum(f.total(f.find(rf"^{re.escape(mlp_parent)}\.{k}$"))
                                  for k in ("vision_dense_h_to_4h_list", "vision_dense_4h_to_h_list",
                                            "vision_gate_proj")) if mlp_parent else 0,
                              _fmt(f.io(mlp_v, "inputs")), _fmt(f.io(mlp_v, "outputs")))
    stages["mlp_lang"] = Stage("mlp_lang", "language FFN", "mlp.dense_h_to_4h / gate_proj / dense_4h_to_h",
                               "transformer.layers.N.mlp + gate_proj",
                               sum(f.total(f"{p}.mlp") for p in lm_layers) + f.total(f.find(r"^mixins\.\w+\.gate_proj$")),
                               _fmt(f.io(mlp_l, "inputs")), _fmt(f.io(mlp_l, "outputs")))
    final_norm = f.find(r"^transformer\.final_layernorm$")
    head = f.find(r"(^|\.)lm_head$")
    stages["head"] = Stage("head", "final RMSNorm + lm_head", "logits over the vocabulary", head or "",
                           f.total(head) + f.total(final_norm), _fmt(f.io(head, "inputs") or f.io(final_norm, "inputs")),
                           _fmt(f.io(head, "outputs") or f.hook_io("", "final_forward", "outputs")))

    layout = trace.meta.get("token_layout") or {}
    seq = len(layout.get("tokens") or []) if isinstance(layout, Mapping) else 0
    image_tokens = sum(int(x) for x in layout.get("image_rope_mask") or []) if isinstance(layout, Mapping) else 0
    if not seq and text_in:
        seq = text_in[-1]
    symbolic = all(st.shape_out == UNKNOWN for key, st in stages.items() if key not in ("attn_vis", "mlp_vis"))
    if symbolic:
        stages = _symbolic(f, stages, patch, words, head, first)
    return Architecture(model_class=root.class_name if root else "?", stages=stages, symbolic=symbolic,
                        vision_tokens=vision_tokens, language_tokens=language_tokens,
                        sequence_length=seq or None, image_tokens=image_tokens or (dropped[1] if dropped else None),
                        expert_weights=tuple(sorted(set(expert_weights))), total_parameters=root.total if root else 0,
                        vision_path=vision)
