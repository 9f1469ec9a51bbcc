"""CogAgent's own views: both image branches in the architecture, the cross image's grid beside the
token layout, and the high-res branch per generation step. Standard library only, like every renderer.

Registered through :mod:`tracer.adapters`; merged over the generic views (and CogVLM's are not
used: a CogAgent trace picks this module by its model class).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..cogvlm.tokens import LayoutError, layout_png, render_layout_text
from ..cogvlm.views import VIEWS as COGVLM_VIEWS
from ..render.common import count_text
from ..render.diagrams import COLOURS, edge, esc, graph, modules_dot, node
from ..render.registry import View, has_generation
from ..schema import Event, Trace
from .facts import render_cross_steps

__all__ = ["VIEWS", "architecture_dot", "cross_grid", "place", "render_tokens_text", "tokens_png"]


def place(path: str) -> str:
    """Colour key of a module path for the module tree: both image branches are "vision"."""
    if "vit_model" in path or path.startswith("mixins.encoder"):
        return "vision"
    if path.startswith("mixins.eva"):
        return "adapter"
    if path.startswith("mixins.") or ".cross_attention" in path:
        return "expert"
    return "language"


class _Shapes:
    """First recorded call of each module path: its shapes and parameters."""

    def __init__(self, trace: Trace) -> None:
        self.first: dict[str, Event] = {}
        for e in trace.of("module"):
            self.first.setdefault(str(e.data.get("path", e.name)), e)
        self.params = {n.path: n.total for n in trace.modules}

    def shape(self, path: str, which: str = "outputs", index: int = 0) -> str:
        e = self.first.get(path)
        values = list(e.data.get(which) or []) if e is not None else []
        if which == "inputs" and not values and e is not None:  # called with keywords only
            values = list((e.data.get("kwargs") or {}).values())
        value: Any = values[index] if index < len(values) else None
        if isinstance(value, dict) and "shape" in value:
            return "(" + ", ".join(str(d) for d in value["shape"]) + ")"
        return "?"

    def dims(self, path: str, which: str = "outputs") -> list[int]:
        e = self.first.get(path)
        values = list(e.data.get(which) or []) if e is not None else []
        value = values[0] if values else None
        return [int(d) for d in value["shape"]] if isinstance(value, dict) and "shape" in value else []

    def count(self, path: str) -> str:
        n = self.params.get(path)
        return f"\n{count_text(n)} params" if n else ""

    def layers(self, container: str) -> int:
        """Children of ``container`` in the model tree (or, without one, among the recorded calls)."""
        prefix = container + "."
        paths = list(self.params) or list(self.first)
        return len({p[len(prefix):].split(".")[0] for p in paths if p.startswith(prefix)})

    def side(self, path: str) -> str:
        dims = self.dims(path, "inputs")
        return f"{dims[-1]} px" if len(dims) == 4 else ""


def architecture_dot(trace: Trace) -> str:
    """CogAgent's data flow with this trace's shapes: the low-res image into the sequence, the
    high-res image into every layer's cross-attention."""
    s = _Shapes(trace)
    blocks = s.layers("mixins.encoder.vit.model.blocks")
    n_layers = s.layers("transformer.layers")
    b: list[str] = [node("picture", "the picture\n(one image, two copies)", shape="note", fillcolor=COLOURS["io"])]
    b += ["  subgraph cluster_low {", '    label="low resolution: into the sequence";', '    style="rounded"; color="#7aa874";',
          node("low", f"image processor\n{s.shape('mixins.eva.vit_model.mixins.patch_embedding.proj', 'inputs')}",
               fillcolor=COLOURS["vision"]),
          node("eva", "mixins.eva.vit_model: EVA2-CLIP-E (SAT)" + s.count("mixins.eva.vit_model"),
               fillcolor=COLOURS["vision"]),
          node("glu", "+ pos_embed, GLU adapter (mixins.eva.linear_proj)" + s.count("mixins.eva.linear_proj"),
               fillcolor=COLOURS["adapter"]),
          node("frame", "boi + image tokens + eoi\nwritten where image_embed_mask = 1", fillcolor=COLOURS["adapter"]),
          "  }"]
    b += ["  subgraph cluster_high {", '    label="high resolution: keys and values only";',
          '    style="rounded"; color="#b36b00";',
          node("high", f"cross image processor\n{s.shape('mixins.encoder.vit.model.patch_embed.proj', 'inputs')}",
               fillcolor=COLOURS["vision"]),
          node("enc", f"mixins.encoder: EVA2-CLIP-L (plain torch)\n{blocks} blocks, the last never runs"
               + s.count("mixins.encoder"), fillcolor=COLOURS["vision"]),
          "  }"]
    b.append(node("ids", "token ids " + s.shape("transformer.word_embeddings", "inputs"), shape="note",
                  fillcolor=COLOURS["io"]))
    b.append(node("words", "word embeddings", fillcolor=COLOURS["language"]))
    b += ["  subgraph cluster_lm {", f'    label="{esc(f"{n_layers} x transformer layer")}";',
          '    style="rounded"; color="#5b8cc0";',
          node("self", "self-attention (rotary; vision experts for boi + image)\nmixins.rotary",
               fillcolor=COLOURS["language"]),
          node("cross", "cross-attention: SAT's cross_attention_forward (default)\n"
               f"query {s.shape('transformer.layers.0.cross_attention.query')} from the sequence\n"
               f"key_value {s.shape('transformer.layers.0.cross_attention.key_value')} from the high-res tokens",
               fillcolor=COLOURS["expert"]),
          node("mlp", "FFN (vision experts for boi + image)\nmixins.mlp", fillcolor=COLOURS["language"]),
          "  }"]
    b.append(node("head", "final RMSNorm, lm_head", fillcolor=COLOURS["language"]))
    b.append(node("logits", "logits " + s.shape(""), shape="note", fillcolor=COLOURS["io"]))
    low_in, high_in = "mixins.eva.vit_model.mixins.patch_embedding.proj", "mixins.encoder.vit.model.patch_embed.proj"
    b += [edge("picture", "low", label=s.side(low_in)), edge("picture", "high", label=s.side(high_in)),
          edge("low", "eva", label=s.shape("mixins.eva.vit_model.mixins.patch_embedding.proj", "inputs")),
          edge("eva", "glu", label=s.shape("mixins.eva.vit_model")),
          edge("glu", "frame", label=s.shape("mixins.eva.linear_proj")),
          edge("ids", "words"), edge("words", "frame", style="dashed"),
          edge("frame", "self", label=s.shape("transformer.layers.0", "inputs")),
          edge("self", "cross", label=s.shape("transformer.layers.0.attention")),
          edge("high", "enc", label=s.shape("mixins.encoder.vit.model.patch_embed.proj", "inputs")),
          edge("enc", "cross", label="encoder_outputs " + s.shape("mixins.encoder") + "\ninto every layer",
               color="#b36b00", penwidth="2"),
          edge("cross", "mlp", label=s.shape("transformer.layers.0.cross_attention")),
          edge("mlp", "head", label=s.shape("transformer.layers.0")),
          edge("head", "logits")]
    b.append('  label="CogAgent: two images, two paths"; labelloc=t; fontsize=13;')
    return graph("cogagent_architecture", b)


def cross_grid(trace: Trace) -> dict[str, int] | None:
    """The cross image's geometry read off the encoder's patch convolution: pixels, grid, patch, tokens."""
    s = _Shapes(trace)
    image = s.dims("mixins.encoder.vit.model.patch_embed.proj", "inputs")  # (B, 3, P, P)
    grid = s.dims("mixins.encoder.vit.model.patch_embed.proj")  # (B, width, g, g)
    if len(image) != 4 or len(grid) != 4:
        return None
    return {"pixels": image[-1], "grid": grid[-1], "patch": image[-1] // grid[-1], "tokens": grid[-1] * grid[-2],
            "width": grid[1]}


def render_tokens_text(trace: Trace, *, width: int = 140) -> str:
    """CogVLM's sequence layout (low-res image tokens and the three masks), then the cross image's grid."""
    text = render_layout_text(trace, width=width)
    g = cross_grid(trace)
    if g is None:
        return text
    return text.rstrip("\n") + (
        f"\n\ncross image (never in the sequence): {g['pixels']}x{g['pixels']} px -> {g['grid']}x{g['grid']} grid of "
        f"{g['patch']} px patches = {g['tokens']} tokens of width {g['width']}, row-major (token r*{g['grid']}+c is "
        f"row r, column c); every layer's cross-attention reads all of them as keys/values, every sequence "
        f"position queries them (no mask).\n")


GRID_PX = 320  # side of the drawn cross grid


def tokens_png(trace: Trace) -> bytes:
    """CogVLM's token strip (the sequence and its three masks), with the cross image's grid beneath:
    the tokens every layer's cross-attention reads, which are never part of the sequence."""
    import io

    from PIL import Image, ImageDraw

    from ..render.fonts import font_for

    strip = Image.open(io.BytesIO(layout_png(trace)))
    g = cross_grid(trace)
    if g is None:
        return layout_png(trace)
    pad, grid = 16, g["grid"]
    image = Image.new("RGB", (max(strip.width, GRID_PX + 560), strip.height + GRID_PX + 3 * pad + 30), "white")
    image.paste(strip, (0, 0))
    draw = ImageDraw.Draw(image)
    top = strip.height + pad
    draw.text((pad, top), f"Cross image: {g['pixels']}x{g['pixels']} px -> {grid}x{grid} patches of {g['patch']} px "
              f"= {g['tokens']} tokens (not in the sequence)", fill="black", font=font_for(15))
    x0, y0, cell = pad, top + 30, GRID_PX / grid
    draw.rectangle((x0, y0, x0 + GRID_PX, y0 + GRID_PX), fill=(253, 236, 210), outline=(179, 107, 0))
    step = max(1, grid // 10)  # every patch row would be a solid fill at this size: one line per `step`
    for i in range(0, grid + 1, step):
        draw.line((x0 + i * cell, y0, x0 + i * cell, y0 + GRID_PX), fill=(214, 160, 90))
        draw.line((x0, y0 + i * cell, x0 + GRID_PX, y0 + i * cell), fill=(214, 160, 90))
    small = font_for(12)
    draw.text((x0 + 2, y0 + 2), "0", fill="black", font=small)
    draw.text((x0 + GRID_PX - 40, y0 + GRID_PX - 16), str(g["tokens"] - 1), fill="black", font=small)
    notes = [f"token r*{grid}+c = patch at row r, column c (row-major, lines every {step} patches)",
             f"each of the {g['tokens']} tokens: width {g['width']} after the high-res encoder (+ pos_embed)",
             "keys/values of the cross-attention in every layer (key_value projects them)",
             "queries: every sequence position above, text and low-res image alike (no mask)",
             "cached generation: SAT keeps the per-layer keys/values (mem_cross);",
             "upstream still re-runs the encoder at every step (see the 'cross' view)"]
    for k, note in enumerate(notes):
        draw.text((x0 + GRID_PX + 24, y0 + 10 + k * 22), note, fill=(70, 70, 70), font=small)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


_GENERIC = {**COGVLM_VIEWS}

VIEWS: dict[str, View] = {
    "architecture": replace(_GENERIC["architecture"], caption=(
        "CogAgent's forward pass as this trace recorded it: the 224 px image through EVA2-CLIP-E into the "
        "sequence, the 1120 px copy through EVA2-CLIP-L into every layer's cross-attention"), dot=architecture_dot),
    "modules": replace(_GENERIC["modules"], dot=lambda t: modules_dot(t, place=place)),
    "tokens": View("tokens", "the input sequence with CogVLM's three masks, and the cross image's token grid",
                   text=lambda t, o: render_tokens_text(t, width=o.width), png=tokens_png,
                   available=lambda t: bool(t.meta.get("token_layout")), errors=(LayoutError,)),
    "cross": View("cross", "the high-resolution branch per generation step: did the encoder run, where the "
                  "cross-attention's keys/values came from", text=lambda t, o: render_cross_steps(t),
                  available=has_generation),
}

