"""The trace: pure data recorded while SAT builds and runs a model.

Everything a renderer or exporter needs is here, as frozen dataclasses that convert to and
from plain JSON (``trace.json``, schema documented in ``docs/trace-schema.md``). Nothing in
this module imports torch or SAT: a saved trace can be rendered on a machine without them.

A trace is a flat list of :class:`Event` s, each with an ``id``, the ``parent`` it ran inside,
a ``category`` and a category-specific ``data`` mapping:

* ``construction`` — a call of SAT's construction API (``get_model``, ``add_mixin``, …);
* ``module`` — one ``nn.Module.forward`` (path from the root, input and output shapes);
* ``hook`` — one dispatch of a SAT hook (``mlp_forward`` …) and the mixin that served it;
* ``generation`` — one step of ``filling_sequence`` (tokens fed, KV cache, sampled token);
* ``training`` — SAT's training path: LoRA swaps, trainable parameters, DeepSpeed set-up, each
  step's forward / backward / optimizer step, checkpoint saves, LoRA merges (:mod:`tracer.training`).

Plus static facts captured once: the module tree with parameter counts (:class:`ModuleNode`)
and the final hook table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal, TextIO

__all__ = [
    "CATEGORIES",
    "DEFAULT_CATEGORIES",
    "DEFAULT_MAX_STEPS",
    "SCHEMA_VERSION",
    "Event",
    "ModuleNode",
    "SchemaError",
    "SourceLocation",
    "TensorInfo",
    "Trace",
    "shape_text",
]

SCHEMA_VERSION = 1
Category = Literal["construction", "module", "hook", "generation", "training", "collective"]
# What tracer.trace() records unless told otherwise.
DEFAULT_CATEGORIES: tuple[Category, ...] = ("construction", "module", "hook", "generation")
# What tracer.trace() can record: the default, and "training", asked for explicitly (cogtrace
# finetune does), since installing it imports DeepSpeed (seconds).
CATEGORIES: tuple[Category, ...] = (*DEFAULT_CATEGORIES, "training")
# Generation steps recorded in full after the context forward; later ones are step summaries
# (tracer/runtime.py). Every cached step runs the same modules and hooks, so a few show the
# path and the cost of tracing stays flat in the length of the answer.
DEFAULT_MAX_STEPS = 4
# Recorded only when a model-parallel run asks for it (tracer.parallel.collectives); a trace
# file may hold them, so readers accept them.
EXTRA_CATEGORIES: tuple[Category, ...] = ("collective",)
# Deepest nesting a trace.json may have: its own structure is ~6 levels (events, data, inputs,
# shape); far deeper is a hostile or broken file, refused before a renderer recurses into it.
MAX_NESTING = 64


# One encoder for every item: json.dumps(..., ensure_ascii=False) builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False)


def shape_text(shape: Any) -> str:
    """``[1, 1264, 64]``: the one way a shape is written, in every view, command and export."""
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


class SchemaError(ValueError):
    """A trace file that is not a cogvlm-tracer trace of a schema version we can read."""


@dataclass(frozen=True)
class SourceLocation:
    """Where a call came from (``file:line`` in the caller) or where a function is defined."""

    file: str
    line: int
    function: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "function": self.function}

    @classmethod
    def of_frame(cls, frame: FrameType) -> SourceLocation:
        """The line a frame is executing (a caller's ``file:line``)."""
        return cls(file=frame.f_code.co_filename, line=frame.f_lineno, function=frame.f_code.co_name)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SourceLocation:
        return cls(file=str(d["file"]), line=int(d["line"]), function=str(d.get("function", "")))


@dataclass(frozen=True)
class TensorInfo:
    """The facts of one tensor that a learner needs: shape, dtype, device."""

    shape: tuple[int, ...]
    dtype: str
    device: str = "cpu"

    def __str__(self) -> str:
        return self.describe(self.shape, self.dtype)

    @staticmethod
    def describe(shape: Any, dtype: str) -> str:
        """``[1, 1264, 64] float32``: how shapes are shown everywhere (renders, Chrome args)."""
        return f"{shape_text(shape)} {dtype}"

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "device": self.device}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TensorInfo:
        return cls(shape=tuple(int(s) for s in d["shape"]), dtype=str(d["dtype"]), device=str(d.get("device", "cpu")))


@dataclass(frozen=True)
class Event:
    """One recorded call. Times are nanoseconds from the start of the trace.

    ``data`` holds JSON-compatible values only (str, int, float, bool, None, lists, dicts);
    its keys per category are listed in ``docs/trace-schema.md``.
    """

    id: int
    parent: int | None
    category: Category
    name: str
    start_ns: int
    duration_ns: int
    data: Mapping[str, Any] = field(default_factory=dict)
    source: SourceLocation | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "parent": self.parent, "category": self.category, "name": self.name,
            "start_ns": self.start_ns, "duration_ns": self.duration_ns, "data": dict(self.data),
        }
        if self.source is not None:
            out["source"] = self.source.to_json()
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Event:
        category = d["category"]
        if category not in CATEGORIES + EXTRA_CATEGORIES:
            raise SchemaError(f"event {d.get('id')}: category {category!r}: expected one of "
                              f"{list(CATEGORIES + EXTRA_CATEGORIES)}")
        return cls(
            id=int(d["id"]), parent=None if d.get("parent") is None else int(d["parent"]),
            category=category, name=str(d["name"]), start_ns=int(d["start_ns"]),
            duration_ns=int(d["duration_ns"]), data=dict(d.get("data", {})),
            source=SourceLocation.from_json(d["source"]) if d.get("source") else None,
            error=d.get("error"),
        )


@dataclass(frozen=True)
class ModuleNode:
    """One ``nn.Module`` of the traced model: where weights live, and how many.

    ``path`` is the dotted name from the root ('' for the root itself); ``parameters`` is the
    count of parameters owned directly (``recurse=False``), ``total`` includes children.
    """

    path: str
    class_name: str
    parameters: int
    total: int
    param_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "class_name": self.class_name, "parameters": self.parameters,
                "total": self.total, "param_shapes": {k: list(v) for k, v in self.param_shapes.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModuleNode:
        return cls(path=str(d["path"]), class_name=str(d["class_name"]), parameters=int(d["parameters"]),
                   total=int(d["total"]),
                   param_shapes={k: tuple(int(s) for s in v) for k, v in d.get("param_shapes", {}).items()})


@dataclass(frozen=True)
class Trace:
    """A whole recording. ``meta`` names the tool, library versions, command and config."""

    events: tuple[Event, ...]
    modules: tuple[ModuleNode, ...] = ()
    hooks: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    exception: str | None = None
    schema_version: int = SCHEMA_VERSION

    # -- queries renderers use -------------------------------------------------
    def of(self, category: Category) -> Iterator[Event]:
        return (e for e in self.events if e.category == category)

    def by_id(self) -> dict[int, Event]:
        return {e.id: e for e in self.events}

    # -- JSON ------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": "cogvlm-tracer",
            "schema_version": self.schema_version,
            "meta": dict(self.meta),
            "exception": self.exception,
            "hooks": dict(self.hooks),
            "modules": [m.to_json() for m in self.modules],
            "events": [e.to_json() for e in self.events],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Trace:
        if not isinstance(d, Mapping) or d.get("format") != "cogvlm-tracer":
            raise SchemaError("not a cogvlm-tracer trace (expected \"format\": \"cogvlm-tracer\")")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaError(f"schema_version {version!r}: this cogvlm-tracer reads version {SCHEMA_VERSION}")
        return cls(
            events=tuple(Event.from_json(e) for e in d.get("events", [])),
            modules=tuple(ModuleNode.from_json(m) for m in d.get("modules", [])),
            hooks=dict(d.get("hooks", {})), meta=dict(d.get("meta", {})),
            exception=d.get("exception"), schema_version=int(version),
        )

    def dump(self, stream: TextIO) -> None:
        """Write ``trace.json``: one module and one event per line, so the file reads and diffs well.

        Each item goes through ``json.dumps`` (the C encoder); ``json.dump`` with ``indent``
        runs the pure-Python encoder, which took most of the time of writing a trace.
        """
        doc = self.to_json()
        items = {key: doc.pop(key) for key in ("modules", "events")}
        head = _ENCODER.encode(doc)
        stream.write(head[:-1])  # the header object, still open
        for key, values in items.items():
            stream.write(f',\n"{key}": [')
            stream.write(",".join("\n " + _ENCODER.encode(v) for v in values))
            stream.write("\n]" if values else "]")
        stream.write("\n}\n")

    @classmethod
    def load(cls, stream: TextIO) -> Trace:
        from .jsonlimits import NestingError, loads_bounded

        try:
            raw = loads_bounded(stream.read(), MAX_NESTING)
        except json.JSONDecodeError as e:
            raise SchemaError(f"not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
        except NestingError as e:
            raise SchemaError(str(e)) from e
        return cls.from_json(raw)
