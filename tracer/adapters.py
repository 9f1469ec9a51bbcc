"""The model registry: the one place where the model-agnostic core learns which models it can explain.

The core (recording, the trace, exporters, generic views) knows SAT, never a model built on
it. What only a model knows lives in its adapter, a folder under ``tracer/`` with two modules:

* ``<pkg>.adapter`` (imports torch and SAT): ``ADAPTER``, an object with
  ``load_config(spec)``, ``build(config, *, device, num_layers, seed)``,
  ``load(spec, *, device, build_only, seed)``, ``forward_inputs(args, *, text_tokens,
  image_device)`` (the one builder of a forward's keyword arguments, used by ``shapes``,
  ``summary``, the bench and the tests), ``dispatch_facts(hook, kwargs, weights, cache)``
  (what one hook dispatch means for this model, e.g. CogVLM's vision/language token split) and
  ``token_layout(...)``;
* ``<pkg>.views`` (standard library only, like every renderer): ``VIEWS``, extra or
  replacement views keyed by name (see :mod:`tracer.render.registry`).

Adding a model = its folder + one :class:`AdapterEntry` line in :data:`REGISTRY`. The adapter is
chosen from the traced model's class: SAT's ``model_class`` in a config, the class of the root
model at run time, or the classes recorded in a trace's construction events. A model no entry
names gets the generic views only.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import UserError

__all__ = ["REGISTRY", "AdapterEntry", "UnknownModel", "adapter_for_config", "adapter_module", "config_model_class",
           "entry_for_classes", "entry_for_config", "entry_for_trace", "resolve_config", "views_module"]

CONFIG_FILE = "model_config.json"  # SAT's name for a checkpoint's config


class UnknownModel(UserError, ValueError):
    """A config or checkpoint whose ``model_class`` no registered adapter explains."""


@dataclass(frozen=True)
class AdapterEntry:
    """One registered model: the class names it explains and where its two modules are."""

    name: str
    model_classes: tuple[str, ...]  # SAT model classes (and subclasses upstream defines) it explains
    package: str  # ``<package>.adapter`` and ``<package>.views`` are imported lazily

    @property
    def adapter(self) -> str:
        return f"{self.package}.adapter"

    @property
    def views(self) -> str:
        return f"{self.package}.views"

    @property
    def config_root(self) -> Path | None:
        """``<package>/configs``: the configs this model ships (found without importing it)."""
        spec = importlib.util.find_spec(self.package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        return Path(locations[0]) / "configs" if locations else None


# The registration: one line per model. Model packages are named by string so that importing
# the core never imports a model (a test checks it).
REGISTRY: tuple[AdapterEntry, ...] = (
    AdapterEntry("cogvlm", ("CogVLMModel", "FineTuneTrainCogVLMModel", "FineTuneTestCogVLMModel"), "tracer.cogvlm"),
    AdapterEntry("cogagent", ("CogAgentModel", "FineTuneTrainCogAgentModel", "FineTuneTestCogAgentModel"), "tracer.cogagent"),
)


def entry_for_classes(names: Iterable[str]) -> AdapterEntry | None:
    """The entry explaining the first of ``names`` (most specific first, e.g. a class's MRO)."""
    for name in names:
        for entry in REGISTRY:
            if name in entry.model_classes:
                return entry
    return None


def entry_for_trace(meta: Mapping[str, Any], construction_classes: Iterable[str] = ()) -> AdapterEntry | None:
    """The entry for a trace: its ``model_class`` (and the root model's MRO, when recorded),
    else the model classes its construction events built, outermost first."""
    names = [str(n) for n in (meta.get("model_mro") or [meta.get("model_class")]) if n]
    return entry_for_classes([*names, *construction_classes])


def adapter_module(entry: AdapterEntry) -> ModuleType:
    """``<package>.adapter`` (imports torch and SAT)."""
    return importlib.import_module(entry.adapter)


def views_module(entry: AdapterEntry) -> ModuleType | None:
    """``<package>.views`` (standard library only), or None for a model without views of its own."""
    try:
        return importlib.import_module(entry.views)
    except ModuleNotFoundError as e:
        if e.name == entry.views:
            return None
        raise


def resolve_config(spec: str | Path) -> Path:
    """``model_config.json`` of ``spec``: a folder holding it, the file itself, or a name under a
    registered model's shipped configs (``tiny/cogvlm-chat-v1.1``, ``configs/full/...``)."""
    path = Path(spec)
    relative = Path(*path.parts[1:]) if path.parts and path.parts[0] == "configs" else path
    roots = [e.config_root for e in REGISTRY]
    for candidate in [path, *(root / p for root in roots if root is not None for p in (path, relative))]:
        if candidate.is_dir() and (candidate / CONFIG_FILE).is_file():
            return candidate / CONFIG_FILE
        if candidate.is_file():
            return candidate
    if path.is_dir():
        raise UserError(f"{path}: no {CONFIG_FILE} in this directory (expected a checkpoint or config folder)")
    raise UserError(f"{spec}: no such config (expected a folder with {CONFIG_FILE}, the file itself, "
                    f"or a shipped name such as tiny/cogvlm-grounding-generalist)")


# A model config is a few levels deep; far deeper is a hostile file (configs of every model).
MAX_CONFIG_NESTING = 16


def config_model_class(spec: str | Path) -> str:
    """The ``model_class`` a config names (SAT's ``AutoModel`` key); '' when it names none."""
    path = resolve_config(spec)
    from .jsonlimits import NestingError, loads_bounded

    try:
        values = loads_bounded(path.read_text(encoding="utf-8"), MAX_CONFIG_NESTING)
    except NestingError as e:
        raise UserError(f"{path}: {e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the config ({type(e).__name__}: {e})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return str(values.get("model_class") or "")


def entry_for_config(spec: str | Path) -> AdapterEntry:
    """The adapter entry for a config's ``model_class``; a config that names none is CogVLM's
    (published CogVLM checkpoints predate the key), anything else unknown is refused."""
    name = config_model_class(spec)
    entry = entry_for_classes([name]) if name else REGISTRY[0]
    if entry is None:
        known = sorted(c for e in REGISTRY for c in e.model_classes)
        raise UnknownModel(f"{resolve_config(spec)}: key 'model_class' = {name!r} has no adapter here; "
                           f"expected one of {known}")
    return entry


def adapter_for_config(spec: str | Path) -> Any:
    """The ``ADAPTER`` object that builds and runs the model a config names."""
    return adapter_module(entry_for_config(spec)).ADAPTER
