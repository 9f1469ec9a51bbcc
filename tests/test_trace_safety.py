"""Tracing leaves nothing behind — after a normal exit, an exception or KeyboardInterrupt — and
never swallows or changes the traced code's exception; nested tracing fails clearly."""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sat.model.transformer as sat_transformer
import sat.transformer_defaults as sat_defaults
import torch
from conftest import tiny_forward_inputs
from sat.model.base_model import AutoModel, BaseMixin, BaseModel
from torch.nn.modules import module as torch_module

import tracer
import tracer.session
from tracer.cogvlm.build import build_model

CONFIG = "configs/tiny/cogvlm-grounding-generalist"


def _classes() -> Iterator[type]:
    stack: list[type] = [BaseModel, BaseMixin]
    seen: set[type] = {AutoModel}
    yield AutoModel
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.add(cls)
            yield cls
            stack.extend(cls.__subclasses__())


def _patchable() -> list[types.FunctionType]:
    """Every function tracing may patch: SAT's construction functions and methods, generation."""
    from tracer.construction import construction_functions
    from tracer.runtime import runtime_functions

    funcs = [*construction_functions(), *runtime_functions()]
    for cls in _classes():
        for value in vars(cls).values():
            if isinstance(value, classmethod):
                value = value.__func__
            if isinstance(value, types.FunctionType):
                funcs.append(value)
    return funcs


class Snapshot:
    """Everything tracing touches, captured before; :meth:`check` asserts it is all back."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.functions = [(f, f.__code__, f.__kwdefaults__) for f in _patchable()]
        self.class_dicts = {cls: dict(vars(cls)) for cls in _classes()}
        self.hooks = model.hooks
        self.hook_values = dict(model.hooks)
        self.vit_hooks = model.mixins["eva"].vit_model.hooks

    def check(self) -> None:
        for func, code, kwdefaults in self.functions:
            assert func.__code__ is code, func
            assert func.__kwdefaults__ is kwdefaults, func
        for cls, saved in self.class_dicts.items():
            now = vars(cls)
            assert set(now) == set(saved), cls
            assert all(now[k] is v for k, v in saved.items()), cls
        assert sat_transformer.HOOKS_DEFAULT is sat_defaults.HOOKS_DEFAULT
        assert all(v is getattr(sat_defaults, f"{k}_default") for k, v in sat_defaults.HOOKS_DEFAULT.items())
        for hooks in (torch_module._global_forward_hooks, torch_module._global_forward_pre_hooks,
                      torch_module._global_forward_hooks_always_called, torch_module._global_forward_hooks_with_kwargs):
            assert not hooks
        for module in self.model.modules():
            assert not module._forward_hooks and not module._forward_pre_hooks
        assert self.model.hooks is self.hooks and dict(self.model.hooks) == self.hook_values
        assert all(self.model.transformer.hooks[k] is v for k, v in self.hook_values.items())
        assert set(self.model.transformer.hooks) == set(self.hook_values)
        assert self.model.mixins["eva"].vit_model.hooks is self.vit_hooks
        assert tracer.session.active_recorder() is None


@pytest.fixture(scope="module")
def tiny() -> Any:
    return build_model(CONFIG)


def _raising_in_layer(model: Any, error: BaseException) -> Callable[[], None]:
    """Make layer 1's MLP raise ``error`` mid-forward (hook dicts swapped, frames open)."""
    def boom(module: Any, args: Any) -> None:
        raise error
    handle = model.transformer.layers[1].mlp.register_forward_pre_hook(boom)
    return handle.remove


def test_no_leak_after_normal_exit(tiny: Any, tmp_path: Path) -> None:
    snapshot = Snapshot(tiny.model)
    with torch.no_grad(), tracer.trace(tmp_path):
        build_model(CONFIG)
        tiny.model(**tiny_forward_inputs(tiny.args))
    snapshot.check()


@pytest.mark.parametrize("error", [ValueError("boom in layer 1"), KeyboardInterrupt()])
def test_no_leak_and_same_exception_when_traced_code_raises(tiny: Any, tmp_path: Path, error: BaseException) -> None:
    snapshot = Snapshot(tiny.model)
    remove = _raising_in_layer(tiny.model, error)
    handle = tracer.trace(tmp_path)
    try:
        with pytest.raises(type(error)) as raised, torch.no_grad(), handle:
            tiny.model(**tiny_forward_inputs(tiny.args))
    finally:
        remove()
    assert raised.value is error  # propagated unchanged, the same object
    snapshot.check()
    trace = handle.trace
    assert trace is not None and trace.exception is not None and type(error).__name__ in trace.exception
    written = json.loads((tmp_path / "trace.json").read_text())
    assert written["exception"] == trace.exception
    failed = [e for e in trace.events if e.error]
    assert any(e.name == "transformer.layers.1.mlp" for e in failed)  # the module that raised
    assert all(e.duration_ns >= 0 for e in trace.events)
    # Tracing still works afterwards.
    with torch.no_grad(), tracer.trace() as again:
        tiny.model(**tiny_forward_inputs(tiny.args))
    assert again.trace is not None and again.trace.exception is None
    snapshot.check()


def test_nested_tracing_is_a_clear_error() -> None:
    with tracer.trace() as outer:
        with pytest.raises(tracer.TracingError, match="nested tracing is not supported") as raised:
            with tracer.trace():
                pass
        assert "test_trace_safety.py:" in str(raised.value)  # names where the active block opened
        assert tracer.session.active_recorder() is outer.recorder  # the outer one is untouched
    assert tracer.session.active_recorder() is None
    with pytest.raises(tracer.TracingError, match="already recorded"), outer:
        pass


def test_bad_options_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"categories \['shapes'\]"):
        tracer.trace(categories=["shapes"])
    with pytest.raises(ValueError, match="max_steps=-1"):
        tracer.trace(max_steps=-1)


def test_other_threads_are_not_recorded(tiny: Any) -> None:
    import threading

    inputs = tiny_forward_inputs(tiny.args)
    with torch.no_grad(), tracer.trace(categories=["module"]) as handle:
        worker = threading.Thread(target=lambda: tiny.model(**inputs))
        worker.start()
        worker.join()
    assert handle.trace is not None and handle.trace.events == ()


def test_patchset_swaps_code_in_place_and_undoes() -> None:
    """The patching primitive: same function object, closure kept, idempotent, exact undo."""
    from tracer.patching import PatchSet

    factor = 3

    def scaled(x: int, *, bias: int = 1) -> int:
        return x * factor + bias  # a closure: the trampoline must keep the cell count

    alias = scaled
    code, kwdefaults = scaled.__code__, scaled.__kwdefaults__
    calls: list[tuple[Any, ...]] = []

    def make(original: Callable[..., int]) -> Callable[..., int]:
        def wrapper(*args: Any, **kwargs: Any) -> int:
            calls.append(args)
            return original(*args, **kwargs)
        return wrapper

    patches = PatchSet()
    assert patches.swap_code(scaled, make) and not patches.swap_code(scaled, make)  # idempotent
    assert alias(2) == 7 and alias(2, bias=0) == 6 and calls == [(2,), (2,)]
    patches.undo()
    patches.undo()
    assert scaled.__code__ is code and scaled.__kwdefaults__ is kwdefaults and alias(2) == 7 and len(calls) == 2
