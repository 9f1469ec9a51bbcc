"""Invariants of the module tree: counts add up, folds hide nothing, order does not matter."""

from __future__ import annotations

import dataclasses
import random

import pytest
from fixtures.render_support import load

from tracer.render.modules import check_totals, module_rows
from tracer.schema import ModuleNode, Trace


@pytest.mark.parametrize("kind", ["synthetic", "real"])
def test_parameter_totals_add_up(kind: str) -> None:
    trace = load(kind)
    assert check_totals(trace) == []
    root = next(m for m in trace.modules if m.path == "")
    assert root.total == 644_000  # the tiny config (cogtrace build prints the same)
    assert sum(m.parameters for m in trace.modules) == root.total
    rows = module_rows(trace)
    assert rows[0].total == root.total
    assert sum(r.total for r in rows if r.depth == 1) == root.total


@pytest.mark.parametrize("kind", ["synthetic", "real"])
def test_identical_layers_fold(kind: str) -> None:
    names = {r.name: r for r in module_rows(load(kind))}
    layers = names["layers.0–1 ×2"]
    assert layers.count == 2 and layers.class_name == "BaseTransformerLayer"
    assert "vision_dense_h_to_4h_list.0–1 ×2" in names


def test_shuffled_events_give_the_same_tree() -> None:
    trace = load("real")
    events = list(trace.events)
    random.Random(0).shuffle(events)
    shuffled = dataclasses.replace(trace, events=tuple(events))
    assert module_rows(shuffled) == module_rows(trace)


def _deep_trace(layers: int) -> Trace:
    """A transformer with ``layers`` identical layers, to check the article's 32-layer fold."""
    modules = [ModuleNode("", "Toy", 0, layers * 10 + 5), ModuleNode("layers", "ModuleList", 0, layers * 10)]
    for i in range(layers):
        modules += [ModuleNode(f"layers.{i}", "Block", 2, 10, {"scale": (2,)}),
                    ModuleNode(f"layers.{i}.fc", "Linear", 8, 8, {"weight": (2, 4)})]
    modules.append(ModuleNode("head", "Linear", 5, 5, {"weight": (5,)}))
    return Trace(events=(), modules=tuple(modules))


def test_thirty_two_layers_fold_into_one_row() -> None:
    rows = module_rows(_deep_trace(32))
    assert [r.name for r in rows] == ["Toy", "layers.0–31 ×32", "fc", "head"]
    assert rows[1].total == 320 and rows[1].count == 32


def test_a_different_layer_breaks_the_fold() -> None:
    trace = _deep_trace(4)
    modules = [dataclasses.replace(m, param_shapes={"weight": (3, 4)}) if m.path == "layers.2.fc" else m
               for m in trace.modules]
    rows = module_rows(dataclasses.replace(trace, modules=tuple(modules)))
    assert [r.name for r in rows if r.depth == 1] == ["layers", "head"]
    assert [r.name for r in rows if r.depth == 2] == ["0–1 ×2", "2", "3"]


def test_wrong_totals_are_reported() -> None:
    trace = _deep_trace(2)
    broken = dataclasses.replace(trace, modules=tuple(
        dataclasses.replace(m, total=999) if m.path == "layers" else m for m in trace.modules))
    problems = check_totals(broken)
    assert any(p.startswith("layers:") for p in problems)
