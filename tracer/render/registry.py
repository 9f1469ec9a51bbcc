"""The views registry: one table of what can be drawn from a trace, used by the CLI, the report and tests.

Generic views work for any SAT model. A model adapter (:mod:`tracer.adapters`) may add views
or replace generic ones by name through its ``<package>.views.VIEWS`` (CogVLM replaces
``architecture`` with its own template and adds ``tokens``). :func:`views_for` picks the
adapter from the trace itself: its ``model_class`` (and the root model's MRO), else the model
classes its construction events built. A trace of a model no adapter explains gets the
generic views only — nothing model-specific is ever drawn for it.

"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..schema import Trace

__all__ = ["TextOptions", "View", "generic_views", "has_forward", "has_generation", "has_training", "views_for"]


@dataclass(frozen=True)
class TextOptions:
    """How a text view is asked for: terminal width, durations shown, colour styles."""

    width: int = 140
    timings: bool = True
    styles: bool = False


def _always(trace: Trace) -> bool:
    return True


def has_forward(trace: Trace) -> bool:
    return any(True for _ in trace.of("module"))


def has_generation(trace: Trace) -> bool:
    return any(True for _ in trace.of("generation"))


def has_training(trace: Trace) -> bool:
    return any(True for _ in trace.of("training"))


@dataclass(frozen=True)
class View:
    """One way to look at a trace, in up to three forms: terminal/plain ``text``, a Graphviz
    ``dot`` diagram, a ``png`` picture drawn directly. ``name`` is the key (``cogtrace render
    --format NAME`` for text, ``--diagram NAME`` for pictures) and the file stem in a report folder."""

    name: str
    caption: str = ""
    text: Callable[[Trace, TextOptions], str] | None = None
    dot: Callable[[Trace], str] | None = None
    png: Callable[[Trace], bytes] | None = None
    available: Callable[[Trace], bool] = _always  # False: the trace has no data for it
    errors: tuple[type[Exception], ...] = field(default=())  # "no data" errors a report skips quietly
    keep: tuple[str, ...] = ()  # extra forms a report folder keeps ("dot", "png")

    def render_text(self, trace: Trace, options: TextOptions | None = None) -> str:
        if self.text is None:
            raise ValueError(f"view {self.name!r} has no text form")
        return self.text(trace, options or TextOptions())


def _lazy(module: str, function: str, *options: str) -> Callable[..., Any]:
    """``module.function(trace, **options)``, imported when first drawn (rich and Pillow are
    slow to import, and a command should pay only for the views it uses)."""
    def render(trace: Trace, opts: TextOptions | None = None) -> Any:
        fn = getattr(importlib.import_module(module, __package__), function)
        o = opts or TextOptions()
        return fn(trace, **{name: getattr(o, name) for name in options})

    render.__qualname__ = f"{module.lstrip('.')}.{function}"
    return render


def generic_views() -> dict[str, View]:
    """The views every SAT model gets, keyed by name."""
    return {
        "tree": View("tree", "construction calls as a tree",
                     text=_lazy(".calls", "render_calls", "width", "timings", "styles")),
        "modules": View("modules", "the folded module tree with parameters and first-call shapes",
                        text=_lazy(".modules", "render_modules", "width", "styles"),
                        dot=_lazy(".diagrams", "modules_dot")),
        "hooks": View("hooks", "SAT's hook table per model and the dispatches recorded",
                      text=_lazy(".hooks", "render_hooks", "width", "styles")),
        "steps": View("steps", "generation steps with the KV cache",
                      text=_lazy(".steps", "render_steps", "width", "timings", "styles"), available=has_generation),
        "architecture": View("architecture", "the model's data flow read off the trace: embeddings, N × layer "
                             "(which mixin serves each hook), final; every shape on an edge is a traced shape",
                             dot=_lazy(".architecture", "architecture_dot"), keep=("dot", "png")),
        "calls": View("calls", "construction calls, clustered by the class they ran on",
                      dot=_lazy(".diagrams", "calls_dot")),
        "training": View("training", "SAT's training path: LoRA swaps, trainable parameters, DeepSpeed, each step",
                         text=_lazy(".training", "training_text"), available=has_training),
        "loss": View("loss", "loss and learning rate per training step", png=_lazy(".training", "loss_curve_png"),
                     available=has_training),
    }


def _construction_classes(trace: Trace) -> list[str]:
    """Model classes built in this trace, outermost call first (``get_model``'s ``model_cls``,
    ``__init__`` owners, ``from_pretrained`` owners)."""
    names: list[str] = []
    for e in trace.of("construction"):
        for key in ("owner", "model_class"):
            value = e.data.get(key)
            if isinstance(value, str) and value and value not in names:
                names.append(value)
    return names


def all_view_names() -> set[str]:
    """Every view name any registered model can have (the generic ones and each adapter's)."""
    from ..adapters import REGISTRY, views_module

    names = set(generic_views())
    for entry in REGISTRY:
        module: Any = views_module(entry)
        if module is not None:
            names.update(module.VIEWS)
    return names


def views_for(trace: Trace) -> dict[str, View]:
    """The generic views, with the views of the trace's model adapter (if any) over them."""
    from ..adapters import entry_for_trace, views_module

    views = generic_views()
    entry = entry_for_trace(trace.meta, _construction_classes(trace))
    module: Any = views_module(entry) if entry is not None else None
    if module is not None:
        views.update(module.VIEWS)
    return views
