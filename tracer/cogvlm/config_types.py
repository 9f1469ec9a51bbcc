"""Check a config's values against the types SAT's own argparse declares for them.

SAT's ``update_args_with_file`` copies every key of ``model_config.json`` into the Namespace
as it is: ``"max_sequence_length": "abc"`` or ``"layernorm_order": "sideways"`` get in unchecked
and fail (or silently do something else) deep inside model construction. The parsers that
``CogVLMModel.get_args`` and ``EVA2CLIPModel.get_args`` build say what each key must be
(``type=int``, ``choices=[...]``, ``store_true`` flags, ``nargs='+'``); we read those
declarations — never a copy of them — and refuse a value that does not fit, in one line.
"""

from __future__ import annotations

import argparse
import functools
import json
from typing import Any

from .config import ConfigError, ModelConfig

__all__ = ["check_config_types"]

_TYPE_NAMES: dict[Any, str] = {int: "an integer", float: "a number", str: "a string"}


@functools.cache
def _declared(model: str) -> dict[str, argparse.Action]:
    """dest -> the argparse action SAT's parser of ``model`` declares for it."""
    if model == "eva":
        from sat.model.official.eva_clip_model import EVA2CLIPModel

        parser = EVA2CLIPModel.list_avail_args(print=False)
    else:
        from .model import CogVLMModel

        parser = CogVLMModel.list_avail_args(print=False)
    return {action.dest: action for action in parser._actions if action.dest != "help"}


def _fits(value: Any, kind: object) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if kind is json.loads:  # e.g. eva_args: a JSON object once parsed
        return isinstance(value, dict)
    return True  # a converter we do not know: SAT's own code decides


def _expected(action: argparse.Action) -> str | None:
    """What ``value`` must be for ``action``, or None when anything goes."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "true or false"
    name = _TYPE_NAMES.get(action.type, "a JSON object" if action.type is json.loads else None)
    if name is None:
        return None
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        return f"a list of {name.split(' ', 1)[1]}s"
    return name


def _check_value(where: str, key: str, value: Any, action: argparse.Action) -> None:
    if value is None and action.default is None:
        return  # SAT's "not set" (e.g. inner_hidden_size: 4 * hidden_size)
    expected = _expected(action)
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        ok = isinstance(value, bool)
    elif action.nargs in ("+", "*") or isinstance(action.nargs, int):
        ok = isinstance(value, list) and all(_fits(v, action.type) for v in value)
    else:
        ok = _fits(value, action.type)
    if not ok:
        raise ConfigError(f"{where}: key '{key}' = {value!r}: expected {expected} "
                          f"(SAT declares --{action.dest.replace('_', '-')} with type "
                          f"{getattr(action.type, '__name__', 'flag')})")
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where}: key '{key}' = {value!r}: expected one of {list(action.choices)}")


def check_config_types(config: ModelConfig) -> None:
    """Raise :class:`ConfigError` for the first key whose value SAT's argparse would not accept."""
    where = str(config.path)
    lm = _declared("lm")
    for key, value in config.values.items():
        if key in lm:
            _check_value(where, key, value, lm[key])
    eva = _declared("eva")
    for key, value in config.eva.items():
        if key in eva:
            _check_value(where, f"eva_args.{key}", value, eva[key])
