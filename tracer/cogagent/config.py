"""Find, read and check a CogAgent ``model_config.json`` before SAT sees it.

A CogAgent config is a CogVLM config (checked by :mod:`tracer.cogvlm.config`: LM widths, the
low-resolution ``eva_args``, ``image_length`` = its patch count) plus the high-resolution
branch: ``cross_image_pix`` (the high-res image's side), ``is_decoder`` (every layer gets
SAT's cross-attention), ``cross_attn_hidden_size`` (the width of what the layers attend to,
which must be the encoder's width), ``cross_hidden_size_per_attention_head`` and our
``cross_vision_args`` (the encoder's widths; upstream's EVA2-CLIP-L when absent).

Shipped configs live in ``tracer/cogagent/configs/{full,tiny}/``; ``full/cogagent-chat`` and
``configs/full/cogagent-chat`` both name them. This module imports neither torch nor SAT.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..cogvlm.config import CONFIG_FILE, ConfigError, ModelConfig, resolve_config_path
from ..cogvlm.config import _check as _check_cogvlm_part

__all__ = ["CONFIG_ROOT", "MODEL_CLASSES", "cross_tokens", "load_config", "resolve"]

CONFIG_ROOT = Path(__file__).parent / "configs"
MODEL_CLASSES = ("CogAgentModel",)
# Upstream's EVA2-CLIP-L, used for any key ``cross_vision_args`` leaves out (see encoder.CrossVisionArgs).
_CROSS_DEFAULTS: dict[str, Any] = {"width": 1024, "layers": 24, "head_width": 64, "patch_size": 14}


def resolve(spec: str | Path) -> Path:
    """A shipped CogAgent name (``tiny/cogagent-chat``, ``configs/full/cogagent-vqa``), else any
    path :func:`tracer.cogvlm.config.resolve_config_path` accepts."""
    parts = Path(spec).parts
    relative = parts[1:] if parts and parts[0] == "configs" else parts
    if relative:
        candidate = CONFIG_ROOT.joinpath(*relative)
        if (candidate / CONFIG_FILE).is_file():
            return candidate / CONFIG_FILE
    return resolve_config_path(spec)


def _positive(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: key '{key}' = {value!r}: expected a positive integer")
    return value


def cross_tokens(values: dict[str, Any]) -> int:
    """How many high-res tokens the cross-attention reads: (cross_image_pix / patch)^2."""
    patch = int(dict(values.get("cross_vision_args") or {}).get("patch_size", _CROSS_DEFAULTS["patch_size"]))
    return (int(values["cross_image_pix"]) // patch) ** 2


def _check_cross(where: str, cfg: dict[str, Any]) -> None:
    if "cross_image_pix" not in cfg:
        raise ConfigError(f"{where}: missing required key 'cross_image_pix' (the high-resolution image's side in "
                          f"pixels, 1120 for the published CogAgent)")
    pix = _positive(where, "cross_image_pix", cfg["cross_image_pix"])
    cross = cfg.get("cross_vision_args", {})
    if not isinstance(cross, dict):
        raise ConfigError(f"{where}: key 'cross_vision_args' = {cross!r}: expected an object with the "
                          f"high-resolution encoder's widths")
    widths = {**_CROSS_DEFAULTS, **cross}
    for key in _CROSS_DEFAULTS:
        _positive(where, f"cross_vision_args.{key}", widths[key])
    patch, width, head = widths["patch_size"], widths["width"], widths["head_width"]
    if pix % patch:
        raise ConfigError(f"{where}: key 'cross_image_pix' = {pix}: expected a multiple of the high-resolution "
                          f"patch size {patch} (e.g. {pix // patch * patch} or {(pix // patch + 1) * patch})")
    if width % head:
        raise ConfigError(f"{where}: key 'cross_vision_args.width' = {width}: expected a multiple of "
                          f"cross_vision_args.head_width = {head}")
    if head % 4:
        raise ConfigError(f"{where}: key 'cross_vision_args.head_width' = {head}: expected a multiple of 4 "
                          f"(2-D rotary embedding rotates pairs in each half of a head)")
    layers = cfg["num_layers"]
    decoder = cfg.get("is_decoder")
    if not (decoder is True or (isinstance(decoder, list) and len(decoder) == layers and all(d is True for d in decoder))):
        raise ConfigError(f"{where}: key 'is_decoder' = {decoder!r}: expected true, or a list of {layers} trues "
                          f"(every layer of CogAgent has a cross-attention)")
    attn_width = _positive(where, "cross_attn_hidden_size", cfg.get("cross_attn_hidden_size"))
    if attn_width != width:
        raise ConfigError(f"{where}: key 'cross_attn_hidden_size' = {attn_width}: expected the high-resolution "
                          f"encoder's width cross_vision_args.width = {width} (the keys/values are projected from it)")
    _positive(where, "cross_hidden_size_per_attention_head", cfg.get("cross_hidden_size_per_attention_head"))


def load_config(spec: str | Path) -> ModelConfig:
    """Read and check a CogAgent config; raises :class:`ConfigError` with a one-line reason."""
    path = resolve(spec)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the file ({e.__class__.__name__}: {e})") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings, got {type(values).__name__}")
    _check_cogvlm_part(str(path), values, MODEL_CLASSES)
    _check_cross(str(path), values)
    return ModelConfig(path=path, values=values)
