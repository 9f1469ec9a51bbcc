"""Find, read and check a CogVLM ``model_config.json`` before SAT sees it.

SAT reads the file with a bare ``json.load`` and fails deep inside model construction (or
not at all) when a value is off. We check it first and raise :class:`ConfigError` with one
line that names the file, the key, the value and what was expected.

This module imports neither torch nor SAT, so the CLI can validate quickly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..jsonlimits import NestingError, loads_bounded

__all__ = ["CONFIG_ROOT", "ConfigError", "ModelConfig", "load_config", "resolve_config_path"]

CONFIG_ROOT = Path(__file__).parent / "configs"
CONFIG_FILE = "model_config.json"

# Model classes this toolkit builds; a config naming anything else is refused up front.
KNOWN_MODEL_CLASSES = ("CogVLMModel",)
KNOWN_VISION_CLASSES = ("EVA2CLIPModel",)
# A model_config.json is two levels deep (eva_args, image_size); anything far deeper is not one.
MAX_NESTING = 16

_LM_INTS = ("num_layers", "hidden_size", "num_attention_heads", "vocab_size", "inner_hidden_size", "image_length")
_EVA_INTS = ("num_layers", "hidden_size", "num_attention_heads", "inner_hidden_size", "patch_size", "in_channels")


class ConfigError(UserError, ValueError):
    """A model config that is missing, unreadable or inconsistent; the message is one line."""


@dataclass(frozen=True)
class ModelConfig:
    """A checked ``model_config.json``: its path and its raw key/value pairs."""

    path: Path
    values: dict[str, Any]

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def eva(self) -> dict[str, Any]:
        return dict(self.values["eva_args"])


def resolve_config_path(spec: str | Path) -> Path:
    """Accept a directory holding ``model_config.json``, the file itself, or a name under the
    shipped configs (``tiny/cogvlm-chat-v1.1``, ``configs/full/cogvlm-base-224``): the registry's
    rule (:func:`tracer.adapters.resolve_config`), with this module's error type."""
    from ..adapters import resolve_config

    try:
        return resolve_config(spec)
    except UserError as e:
        raise ConfigError(str(e)) from None


def _int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: key '{key}' = {value!r}: expected a positive integer")
    return value


def _require(where: str, table: dict[str, Any], key: str, prefix: str = "") -> Any:
    if key not in table:
        raise ConfigError(f"{where}: missing required key '{prefix}{key}'")
    return table[key]


def _check(where: str, cfg: dict[str, Any], model_classes: tuple[str, ...] = KNOWN_MODEL_CLASSES) -> None:
    model_class = _require(where, cfg, "model_class")
    if model_class not in model_classes:
        raise ConfigError(f"{where}: key 'model_class' = {model_class!r}: expected one of {list(model_classes)}")
    for key in _LM_INTS:
        _int(where, key, _require(where, cfg, key))
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    if hidden % heads:
        raise ConfigError(f"{where}: key 'hidden_size' = {hidden}: expected a multiple of num_attention_heads = {heads}")
    if (hidden // heads) % 2:
        raise ConfigError(f"{where}: key 'num_attention_heads' = {heads}: expected an even head size for rotary "
                          f"embedding, got hidden_size / heads = {hidden // heads}")
    eva = _require(where, cfg, "eva_args")
    if not isinstance(eva, dict):
        raise ConfigError(f"{where}: key 'eva_args' = {eva!r}: expected an object with the vision tower's settings")
    vision_class = eva.get("model_class", "EVA2CLIPModel")
    if vision_class not in KNOWN_VISION_CLASSES:
        raise ConfigError(f"{where}: key 'eva_args.model_class' = {vision_class!r}: "
                          f"expected one of {list(KNOWN_VISION_CLASSES)}")
    for key in _EVA_INTS:
        _int(where, f"eva_args.{key}", _require(where, eva, key, "eva_args."))
    if eva["hidden_size"] % eva["num_attention_heads"]:
        raise ConfigError(f"{where}: key 'eva_args.hidden_size' = {eva['hidden_size']}: expected a multiple of "
                          f"eva_args.num_attention_heads = {eva['num_attention_heads']}")
    size = _require(where, eva, "image_size", "eva_args.")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise ConfigError(f"{where}: key 'eva_args.image_size' = {size!r}: expected [height, width] in pixels")
    patch = eva["patch_size"]
    if size[0] % patch or size[1] % patch:
        raise ConfigError(f"{where}: key 'eva_args.image_size' = {size}: expected multiples of patch_size = {patch}")
    patches = (size[0] // patch) * (size[1] // patch)
    if cfg["image_length"] != patches:
        raise ConfigError(f"{where}: key 'image_length' = {cfg['image_length']}: expected (image_size / patch_size)^2 "
                          f"= ({size[0]}/{patch})*({size[1]}/{patch}) = {patches}")
    pre, post = eva.get("pre_len", 1), eva.get("post_len", 0)
    for key, value in (("pre_len", pre), ("post_len", post)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: key 'eva_args.{key}' = {value!r}: expected a non-negative integer")
    seq = eva.get("max_sequence_length")
    if seq is not None:
        _int(where, "eva_args.max_sequence_length", seq)
    if "max_sequence_length" in cfg:
        _int(where, "max_sequence_length", cfg["max_sequence_length"])
    if seq is not None and seq != pre + patches + post:
        raise ConfigError(f"{where}: key 'eva_args.max_sequence_length' = {seq}: expected pre_len + patches + post_len "
                          f"= {pre} + {patches} + {post} = {pre + patches + post}")


def load_config(spec: str | Path) -> ModelConfig:
    """Read and check a config; raises :class:`ConfigError` with a one-line reason."""
    path = resolve_config_path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the file ({e.__class__.__name__}: {e})") from e
    try:
        values = loads_bounded(text, MAX_NESTING)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except NestingError as e:
        raise ConfigError(f"{path}: {e}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings, got {type(values).__name__}")
    _check(str(path), values)
    return ModelConfig(path=path, values=values)
