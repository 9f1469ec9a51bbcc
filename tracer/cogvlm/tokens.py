"""The token layout: what CogVLM's input sequence looks like and what its three masks do.

The question learners ask most about CogVLM is why there are three image masks. Drawn under
the sequence they answer themselves: ``image_embed_mask`` marks the rows the vision tower
overwrites (boi … eoi), ``vision_expert_mask`` the rows that use the vision-expert weights
(boi … last image token), ``image_rope_mask`` the image tokens that share one rotary
position id — which the position-id row shows directly.

Input — ``Trace.meta["token_layout"]``, filled by whoever traces the chat input:

``tokens``
    list[int], the context's input ids, one per position (length S); image slots hold the
    placeholder id the text processor put there.
``pieces``
    list[str], the decoded piece of each position (same length), e.g. ``"<s>"``, ``"<boi>"``,
    ``"<image>"``, ``"<eoi>"``, ``"▁Where"``.
``image_embed_mask``, ``vision_expert_mask``, ``image_rope_mask``
    list[int] of 0/1, length S, exactly as passed to the model.
``position_ids``
    list[int], length S, the rotary position ids passed to the model.

A run of three or more positions that agree on token, piece and all three masks folds into
one cell with its count ("<image> ×1225"), so a 1235-token sequence fits on one strip.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..render.fonts import font_for, has_cjk
from ..schema import Trace

__all__ = ["LAYOUT_KEYS", "LayoutError", "Segment", "layout_png", "layout_segments", "render_layout_text"]

LAYOUT_KEYS = ("tokens", "pieces", "image_embed_mask", "vision_expert_mask", "image_rope_mask", "position_ids")
MASKS = ("image_embed_mask", "vision_expert_mask", "image_rope_mask")
MIN_FOLD = 3


class LayoutError(ValueError):
    """``meta['token_layout']`` is missing or inconsistent; the message says which key."""


@dataclass(frozen=True)
class Segment:
    """One cell of the strip: a single position, or a folded run of identical positions."""

    start: int  # first position
    count: int
    role: str  # BOS, boi, image, eoi, text
    token: int
    piece: str
    masks: tuple[int, int, int]  # image_embed, vision_expert, image_rope
    positions: tuple[int, int]  # first and last position id in the run

    @property
    def position_text(self) -> str:
        first, last = self.positions
        if self.count == 1 or first == last:
            return str(first) if self.count == 1 else f"{first} (all)"
        return f"{first}–{last}"

    @property
    def index_text(self) -> str:
        return str(self.start) if self.count == 1 else f"{self.start}–{self.start + self.count - 1}"

    @property
    def piece_text(self) -> str:
        return self.piece if self.count == 1 else f"{self.piece} ×{self.count}"

    @property
    def role_text(self) -> str:
        return self.role if self.count == 1 else f"{self.role} ×{self.count}"


def _layout(trace_or_layout: Trace | Mapping[str, Any]) -> Mapping[str, Sequence[Any]]:
    layout = trace_or_layout.meta.get("token_layout") if isinstance(trace_or_layout, Trace) else trace_or_layout
    if not isinstance(layout, Mapping):
        raise LayoutError("this trace has no meta['token_layout'] (it records no chat input)")
    missing = [k for k in LAYOUT_KEYS if not isinstance(layout.get(k), Sequence)]
    if missing:
        raise LayoutError(f"meta['token_layout'] lacks {missing}: expected lists {list(LAYOUT_KEYS)}")
    n = len(layout["tokens"])
    wrong = [f"{k} ({len(layout[k])})" for k in LAYOUT_KEYS if len(layout[k]) != n]
    if wrong:
        raise LayoutError(f"meta['token_layout']: lengths differ from tokens ({n}): {', '.join(wrong)}")
    return layout


def _role(i: int, piece: str, masks: tuple[int, int, int]) -> str:
    embed, expert, rope = masks
    if rope:
        return "image"
    if embed and expert:
        return "boi"
    if embed:
        return "eoi"
    if i == 0 and piece in ("<s>", "[BOS]", "<bos>"):
        return "BOS"
    return "text"


def layout_segments(trace_or_layout: Trace | Mapping[str, Any]) -> list[Segment]:
    layout = _layout(trace_or_layout)
    rows = []
    for i, token in enumerate(layout["tokens"]):
        masks = (int(layout["image_embed_mask"][i]), int(layout["vision_expert_mask"][i]),
                 int(layout["image_rope_mask"][i]))
        piece = str(layout["pieces"][i])
        rows.append((int(token), piece, masks, int(layout["position_ids"][i])))
    segments: list[Segment] = []
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1][:3] == rows[i][:3]:
            j += 1
        run = j - i + 1
        if run < MIN_FOLD:
            j, run = i, 1
        token, piece, masks, _ = rows[i]
        segments.append(Segment(i, run, _role(i, piece, masks), token, piece, masks, (rows[i][3], rows[j][3])))
        i = j + 1
    return segments


def _summary(segments: Sequence[Segment]) -> str:
    counts: dict[str, int] = {}
    for s in segments:
        counts[s.role] = counts.get(s.role, 0) + s.count
    total = sum(counts.values())
    parts = [f"{counts[r]} {r}" for r in ("BOS", "boi", "image", "eoi", "text") if r in counts]
    return f"{total} positions = " + " + ".join(parts)


# -- text --------------------------------------------------------------------------------------

def render_layout_text(trace_or_layout: Trace | Mapping[str, Any], *, width: int = 140) -> str:
    """The strip as aligned text columns, wrapped to ``width``; row names repeat per band."""
    segments = layout_segments(trace_or_layout)
    names = ["index", "role", "token id", "piece", "image_embed_mask", "vision_expert_mask", "image_rope_mask",
             "position_ids"]
    columns = [[s.index_text, s.role, str(s.token), s.piece_text, *(str(m) for m in s.masks), s.position_text]
               for s in segments]
    label_w = max(len(n) for n in names) + 2
    lines = [f"Token layout: {_summary(segments)}", ""]
    band: list[list[str]] = []
    used = label_w

    def flush() -> None:
        if not band:
            return
        widths = [max(len(c) for c in col) for col in band]
        for r, name in enumerate(names):
            cells = "  ".join(col[r].ljust(w) for col, w in zip(band, widths, strict=True))
            lines.append((name.ljust(label_w) + cells).rstrip())
        lines.append("")

    for col in columns:
        w = max(len(c) for c in col) + 2
        if band and used + w > width:
            flush()
            band, used = [], label_w
        band.append(col)
        used += w
    flush()
    lines += ["image_embed_mask: rows the vision tower's output replaces (boi, image, eoi)",
              "vision_expert_mask: rows that use the vision-expert QKV and FFN weights (boi, image)",
              "image_rope_mask: image tokens, which all share one rotary position id"]
    return "\n".join(lines) + "\n"


# -- picture -----------------------------------------------------------------------------------

ROLE_COLOURS = {"BOS": (207, 207, 207), "boi": (255, 214, 153), "eoi": (255, 214, 153),
                "image": (183, 223, 176), "text": (176, 205, 236)}
MASK_COLOURS = {"image_embed_mask": (242, 153, 74), "vision_expert_mask": (214, 86, 110),
                "image_rope_mask": (91, 158, 96)}
CELL_W, FOLD_W, CELL_H, LABEL_W, PAD = 78, 170, 30, 170, 16


def _covering(font: Any, text: str) -> Any:
    """``font``, or a CJK font of the same size when ``text`` holds Chinese (a prompt's pieces)."""
    return font_for(font.size, cjk=True) if has_cjk(text) and hasattr(font, "size") else font


def layout_png(trace_or_layout: Trace | Mapping[str, Any], *, max_width: int = 1600) -> bytes:
    """The strip as a PNG: token cells on top, the three masks and position ids beneath."""
    from PIL import Image, ImageDraw

    segments = layout_segments(trace_or_layout)
    font, small, bold = font_for(13), font_for(11), font_for(15)
    widths = [FOLD_W if s.count > 1 else CELL_W for s in segments]
    bands: list[list[int]] = [[]]
    used = LABEL_W + PAD
    for i, w in enumerate(widths):
        if bands[-1] and used + w > max_width - PAD:
            bands.append([])
            used = LABEL_W + PAD
        bands[-1].append(i)
        used += w
    rows = ["role", "piece", *MASKS, "position_ids", "index"]
    band_h = CELL_H * len(rows) + PAD
    width = min(max_width, max(LABEL_W + PAD * 2 + sum(widths[i] for i in band) for band in bands))
    height = 50 + band_h * len(bands) + 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((PAD, 14), f"Token layout: {_summary(segments)}", fill="black", font=bold)

    def centred(box: tuple[int, int, int, int], text: str, f: Any = font, fill: Any = "black") -> None:
        f = _covering(f, text)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
        x = box[0] + (box[2] - box[0] - (right - left)) / 2
        y = box[1] + (box[3] - box[1] - (bottom - top)) / 2 - top
        draw.text((x, y), text, fill=fill, font=f)

    y0 = 50
    for band in bands:
        for r, name in enumerate(rows):
            y = y0 + r * CELL_H
            draw.text((PAD, y + 8), name, fill=(60, 60, 60), font=small)
        x = LABEL_W
        for i in band:
            s, w = segments[i], widths[i]
            role_box = (x + 2, y0 + 2, x + w - 2, y0 + CELL_H - 2)
            draw.rounded_rectangle(role_box, radius=5, fill=ROLE_COLOURS.get(s.role, (230, 230, 230)),
                                   outline=(120, 120, 120))
            centred(role_box, s.role_text)
            piece_box = (x + 2, y0 + CELL_H + 2, x + w - 2, y0 + 2 * CELL_H - 2)
            centred(piece_box, _clip(draw, s.piece_text, w - 6, _covering(small, s.piece_text)), small)
            for m, mask in enumerate(MASKS):
                top = y0 + (2 + m) * CELL_H
                box = (x + 6, top + 6, x + w - 6, top + CELL_H - 6)
                value = s.masks[m]
                draw.rectangle(box, fill=MASK_COLOURS[mask] if value else (250, 250, 250), outline=(150, 150, 150))
                centred(box, str(value), small, "white" if value else (150, 150, 150))
            pos_top = y0 + 5 * CELL_H
            centred((x, pos_top, x + w, pos_top + CELL_H), s.position_text, small)
            idx_top = y0 + 6 * CELL_H
            centred((x, idx_top, x + w, idx_top + CELL_H - 8), f"#{s.index_text}", small, (140, 140, 140))
            x += w
        y0 += band_h
    notes = ["image_embed_mask: rows the vision tower's output replaces (boi, image, eoi)",
             "vision_expert_mask: rows that use the vision-expert weights (boi, image)",
             "image_rope_mask: image tokens, which share one rotary position id (see position_ids)"]
    for k, note in enumerate(notes):
        draw.text((PAD, y0 + k * 17), note, fill=(70, 70, 70), font=small)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _clip(draw: Any, text: str, width: int, font: Any) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
