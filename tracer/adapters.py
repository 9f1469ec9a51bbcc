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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["REGISTRY", "AdapterEntry", "adapter_module", "entry_for_classes", "entry_for_trace", "views_module"]


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


# The registration: one line per model. Model packages are named by string so that importing
# the core never imports a model (a test checks it).
REGISTRY: tuple[AdapterEntry, ...] = (
    AdapterEntry("cogvlm", ("CogVLMModel", "FineTuneTrainCogVLMModel", "FineTuneTestCogVLMModel"), "tracer.cogvlm"),
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
