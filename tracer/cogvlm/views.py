"""CogVLM's own views: the architecture template with the trace's shapes, and the token layout.

Registered through :mod:`tracer.adapters` and merged over the generic views by
:func:`tracer.render.registry.views_for`. Standard library only (plus Pillow for the token
picture), like every renderer: a saved trace draws on a machine without torch or SAT.
"""

from __future__ import annotations

from dataclasses import replace

from ..render.common import count_text, human_count
from ..render.diagrams import COLOURS, edge, esc, graph, modules_dot, node
from ..render.registry import View, generic_views
from ..schema import Trace
from .architecture import SYMBOLS, Architecture, Stage, architecture
from .tokens import LayoutError, layout_png, render_layout_text

__all__ = ["VIEWS", "architecture_dot", "place"]


def place(path: str) -> str:
    """Where a module's weights live, for the module tree's colours."""
    if "vit_model" in path:
        return "vision"
    if path.startswith("mixins.eva"):
        return "adapter"
    if path.startswith("mixins."):
        return "expert"
    return "language"


def _stage_label(s: Stage) -> str:
    lines = [s.title]
    if s.detail:
        lines.append(s.detail)
    if s.params:
        lines.append(f"{count_text(s.params)} params" + (f" in {s.where}" if s.where else ""))
    elif s.where:
        lines.append(s.where)
    return "\n".join(lines)


def architecture_dot(trace: Trace, arch: Architecture | None = None) -> str:
    """CogVLM's data flow with this trace's shapes on the edges."""
    a = arch or architecture(trace)
    st = a.stages
    body: list[str] = []

    def box(key: str, place: str, **attrs: str) -> None:
        body.append(node(key, _stage_label(st[key]), fillcolor=COLOURS[place], **attrs))

    body.append(node("image", f"image\n{st['image'].shape_out}", shape="note", fillcolor=COLOURS["io"]))
    tower = a.vision_path or "?"
    body += ["  subgraph cluster_vision {", f'    label="vision tower: {esc(tower)}";',
             '    style="rounded"; color="#7aa874";']
    for key in ("patch", "cls", "eva", "drop"):
        box(key, "vision")
    body.append("  }")
    box("glu", "adapter")
    box("frame", "adapter")
    body.append(node("ids", "token ids\n" + st["text"].shape_in, shape="note", fillcolor=COLOURS["io"]))
    box("text", "language")
    vt, lt = a.vision_tokens, a.language_tokens
    split = f"vision expert: {vt} tokens (boi + image)\\nlanguage expert: {lt} tokens" if vt is not None else ""
    lm = st["lm"]
    lm_label = f"{lm.title}: {lm.where}" + (f" ({count_text(lm.params)} params in the layers)" if lm.params else "")
    body += ["  subgraph cluster_lm {", f'    label="{esc(lm_label)}";', '    style="rounded"; color="#5b8cc0";']
    body.append(node("lm_in", "input RMSNorm", fillcolor=COLOURS["language"]))
    body.append(node("core", f"rotary self-attention over all {a.sequence_length or ('S' if a.symbolic else '?')} positions\n"
                      "(image tokens share one rotary position id)", fillcolor=COLOURS["language"]))
    body.append(node("post", "output projections (vision_dense / dense) + residual\npost-attention RMSNorm",
                      fillcolor=COLOURS["language"]))
    for key, place in (("attn_vis", "expert"), ("attn_lang", "language"), ("mlp_vis", "expert"),
                       ("mlp_lang", "language")):
        box(key, place)
    body.append(node("lm_out", "merge by vision_expert_mask + residual", fillcolor=COLOURS["language"]))
    if split:
        body.append(f'    "split" [label="{split}" shape=plaintext fillcolor="none"];')
    body.append("  }")
    box("head", "language")
    body.append(node("logits", f"logits\n{st['head'].shape_out}", shape="note", fillcolor=COLOURS["io"]))

    def flow(a_: str, b_: str, label: str, **attrs: str) -> None:
        body.append(edge(a_, b_, label=label, **attrs))

    flow("image", "patch", st["patch"].shape_in)
    flow("patch", "cls", st["patch"].shape_out)
    flow("cls", "eva", st["cls"].shape_out)
    flow("eva", "drop", st["eva"].shape_out)
    flow("drop", "glu", st["drop"].shape_out)
    flow("glu", "frame", st["glu"].shape_out)
    flow("ids", "text", st["text"].shape_in)
    flow("frame", "lm_in", st["frame"].shape_out)
    flow("text", "frame", st["text"].shape_out, style="dashed")
    flow("lm_in", "attn_vis", st["attn_vis"].shape_in)
    flow("lm_in", "attn_lang", st["attn_lang"].shape_in)
    flow("attn_vis", "core", st["attn_vis"].shape_out + " QKV")
    flow("attn_lang", "core", st["attn_lang"].shape_out + " QKV")
    flow("core", "post", st["lm"].shape_out)
    flow("post", "mlp_vis", st["mlp_vis"].shape_in)
    flow("post", "mlp_lang", st["mlp_lang"].shape_in)
    flow("mlp_vis", "lm_out", st["mlp_vis"].shape_out + " inner")
    flow("mlp_lang", "lm_out", st["mlp_lang"].shape_out + " inner")
    flow("lm_out", "head", st["lm"].shape_out)
    flow("head", "logits", st["head"].shape_out)
    if split:
        body.append('  "split" -> "lm_in" [style=invis];')
    total = f"{a.model_class}: {count_text(a.total_parameters)} parameters ({human_count(a.total_parameters)})"
    if a.symbolic:
        total += f"\nno forward in this trace: widths from the weights; {SYMBOLS}"
    body.append(f'  label="{esc(total)}"; labelloc=t; fontsize=13;')
    return graph("cogvlm_architecture", body)


def _has_layout(trace: Trace) -> bool:
    return bool(trace.meta.get("token_layout"))


_GENERIC = generic_views()

VIEWS: dict[str, View] = {
    "architecture": replace(_GENERIC["architecture"], caption=(
        "CogVLM's forward pass as this trace recorded it: the vision tower, the GLU adapter, the language "
        "layers with their vision and language experts; every shape on an edge is a traced shape"),
        dot=architecture_dot),
    "modules": replace(_GENERIC["modules"], dot=lambda t: modules_dot(t, place=place)),
    "tokens": View("tokens", "the input sequence and CogVLM's three masks",
                   text=lambda t, o: render_layout_text(t, width=o.width), png=layout_png,
                   available=_has_layout, errors=(LayoutError,)),
}
