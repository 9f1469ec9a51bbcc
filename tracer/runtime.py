"""Runtime tracing: module forwards, SAT hook dispatches (and who served them), generation steps.

Three mechanisms, each chosen for a reason:

* **Global module hooks** (``torch.nn.modules.module.register_module_forward_pre_hook`` /
  ``register_module_forward_hook(with_kwargs=True, always_call=True)``): one handle pair,
  removed in ``finally``. Unlike per-module hooks they also see models built *before* the
  recording started and modules added during it (a mixin added after the first forward),
  and leave no state on any model. A module's path comes from the first root it was found
  under (``named_modules`` of the outermost module called). ``always_call`` closes the
  event of a forward that raised, with the error.
* **SAT's hooks dicts**: ``BaseModel.forward`` copies ``model.hooks`` into the shared
  ``transformer.hooks`` dict and every layer calls ``self.hooks['mlp_forward'](...)``. In
  the pre-hook of each ``BaseModel`` forward we set ``model.hooks`` to a dict with the
  same keys whose values record and then call the original; after the forward (also on
  error) ``model.hooks`` is the original dict again and ``transformer.hooks`` holds the
  original functions, as after an untraced forward. Same keys means SAT's checks
  (``'attention_fn' in self.hooks``) see the same thing; the originals (bound methods,
  ``partial`` chains of ``non_conflict`` hooks) are called untouched. Who served a hook
  comes from ``model.hook_origins`` ("lora -> model" is served by ``lora``).
  SAT's default implementations (``sat.transformer_defaults.*_default``) get their code
  swapped instead, because they are not only dispatched through ``HOOKS_DEFAULT``: SAT's
  own ``attention_forward_default`` and CogVLM's vision-expert attention call
  ``attention_fn_default`` directly, and a ``non_conflict`` mixin hook receives a default
  as ``old_impl``. Each of those calls is recorded as a dispatch served by ``default``.
* **Generation**: ``filling_sequence`` / ``stream_filling_sequence`` get their code swapped
  (so ``from sat.generation.autoregressive_sampling import filling_sequence`` done early is
  caught too); inside them, every forward of the root model is one step.
* **Summary steps** keep the cost of tracing flat in the length of an answer. Every cached
  step runs the same modules and hooks with one more position in the cache, so only the
  context forward and the first ``max_steps`` steps are recorded in full. For the later ones
  the global module hooks are *lifted* (removed from torch, so every module takes torch's
  hook-free call path) and one forward pre-hook / forward hook pair on the root model records
  each step as a ``generation`` event alone: tokens fed, cache length, sampled token, time.
  The global pair is back as soon as the generation call returns (a stream: before the
  caller's code runs between two tokens), and the root's pair is gone with it.

Weights used by a hook: every module with parameters of its own whose forward runs while
that hook is the innermost one being dispatched (e.g. ``mixins.mlp.vision_dense_h_to_4h_list.0``
inside ``mlp_forward`` of layer 0). Parameters used without calling their module (``boi``,
``F.linear(x, word_embeddings.weight)``) are not seen.

What a dispatch *means* for a particular model (CogVLM: how many tokens went to the vision
experts) comes from that model's adapter (:mod:`tracer.adapters`), chosen by the class of
the model whose forward is running; this module names no model.
"""

from __future__ import annotations

import functools
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.modules import module as torch_module
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from .adapters import adapter_module, entry_for_classes
from .patching import PatchSet
from .schema import SourceLocation
from .sink import Record, Recorder
from .values import tensor_info, tensor_infos

__all__ = ["install"]

@dataclass
class _Frame:
    """One module forward in progress."""

    module: torch.nn.Module
    path: str
    token: int = -1
    record: Record | None = None
    layer_id: int | None = None
    swapped: dict | None = None  # the model's original hooks dict while ours is installed
    wrapped: dict | None = None
    step_token: int = -1
    step_record: Record | None = None
    suppressing: bool = False
    # The model adapter (tracer.adapters) of the model this forward is in, and its cache for
    # one model forward (SAT hands the same masks to every layer).
    adapter: Any = None
    facts_cache: dict[int, Any] | None = None


@dataclass
class _HookFrame:
    weights: list[str] = field(default_factory=list)


@dataclass
class _Generation:
    """One ``filling_sequence`` run: how many steps so far, the step awaiting its token."""

    steps: int = 0
    recorded: int = 0  # steps recorded in full (module and hook events)
    context_length: int | None = None
    previous: Record | None = None
    sampled: list[int] = field(default_factory=list)
    root: torch.nn.Module | None = None  # the model whose forwards are the steps

    def take_sampled(self, tokens: torch.Tensor) -> None:
        """Record ``tokens[0, -1]`` as the token sampled by the previous step, if one is waiting."""
        if self.previous is None:
            return
        token = _int_or_none(tokens[0, -1])
        self.previous.data["sampled_token"] = token
        if token is not None:
            self.sampled.append(token)
        self.previous = None


def _location(fn: Any) -> SourceLocation | None:
    """Where a hook or forward is defined (unwraps partials and bound methods)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    return SourceLocation(file=code.co_filename, line=code.co_firstlineno, function=fn.__qualname__)


def _outcome(rest: tuple) -> tuple[dict[str, Any], Any, str | None]:
    """(kwargs, result, error) from a forward hook's arguments after ``(module, args)``: torch
    calls an ``always_call`` hook as ``hook(module, args, result)`` when the forward raised."""
    if len(rest) == 2:
        return rest[0], rest[1], None
    exc = sys.exc_info()[1]
    return {}, rest[0] if rest else None, "error" if exc is None else f"{type(exc).__name__}: {exc}"


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.device.type != "meta":
        return int(value)
    return None


class _Runtime:
    def __init__(self, recorder: Recorder) -> None:
        from sat.model.base_model import BaseModel
        from sat.model.transformer import BaseTransformer

        self.rec = recorder
        self.BaseModel = BaseModel
        self.BaseTransformer = BaseTransformer
        self.want_modules = recorder.wants("module")
        self.want_hooks = recorder.wants("hook")
        # id(module) -> (weak reference, path from its root, owns parameters). The reference
        # tells a module apart from a later one that reuses a freed module's id.
        self.paths: dict[int, tuple[weakref.ref, str, bool]] = {}
        self.frames: list[_Frame] = []
        self.hook_frames: list[_HookFrame] = []
        self.generation: _Generation | None = None
        self._forward_sources: dict[type, SourceLocation | None] = {}
        self._kwarg_cache: dict[int, tuple[torch.Tensor, dict[str, Any]]] = {}
        self._wrapped_hooks: dict[int, tuple[Any, dict, str, dict]] = {}
        self._adapters: dict[type, Any] = {}
        self._global: list[Any] = []  # the global module hook pair, while installed
        self._lifted: list[Any] = []  # the root model's hook pair, while the global pair is lifted
        self._summary: _Frame | None = None  # the summary step running under the root's pair

    # -- the hooks themselves -----------------------------------------------------------
    def attach(self) -> None:
        """Install the global module hook pair (idempotent)."""
        if not self._global:
            self._global.append(register_module_forward_pre_hook(self.pre))
            self._global.append(register_module_forward_hook(self.post, with_kwargs=True, always_call=True))

    def detach(self) -> None:
        """Remove the global module hook pair (idempotent)."""
        while self._global:
            handle = self._global.pop()
            handle.remove()
            # torch's handle for a global hook registered with_kwargs=True does not clear its
            # with_kwargs flag (only the always_call one): clear it ourselves.
            torch_module._global_forward_hooks_with_kwargs.pop(handle.id, None)

    def _lift(self, root: torch.nn.Module) -> None:
        """Summary steps from now on: only ``root``'s own hook pair watches (see the module doc)."""
        if self._lifted or not self._global:
            return
        self._lifted.append(root.register_forward_pre_hook(self._summary_pre, with_kwargs=True))
        self._lifted.append(root.register_forward_hook(self._summary_post, with_kwargs=True, always_call=True))
        self.detach()

    def _land(self, *, reattach: bool = True) -> None:
        """Undo :meth:`_lift`: the root's pair removed, the global pair back."""
        if not self._lifted:
            return
        for handle in self._lifted:
            handle.remove()
        self._lifted.clear()
        if reattach:
            self.attach()

    # -- module paths -------------------------------------------------------------------
    def _known(self, module: torch.nn.Module) -> tuple[weakref.ref, str, bool] | None:
        entry = self.paths.get(id(module))
        return entry if entry is not None and entry[0]() is module else None

    def _learn(self, root: torch.nn.Module, prefix: str = "") -> None:
        for path, module in root.named_modules(remove_duplicate=False, prefix=prefix):
            if self._known(module) is None:
                owns = any(p is not None for p in module._parameters.values())
                self.paths[id(module)] = (weakref.ref(module), path, owns)

    def _path(self, module: torch.nn.Module) -> str:
        entry = self._known(module)
        if entry is not None:
            return entry[1]
        if not self.frames:  # an outermost call: a new root
            if not isinstance(module, self.BaseModel):
                # Not a SAT model (a preprocessing transform, a user's wrapper): its own root,
                # ``<Resize>``, so its calls never merge with the model's root ''.
                prefix = f"<{type(module).__name__}>"
                self._learn(module, prefix)
                return prefix
            self._learn(module)
            self.rec.add_model(module)
            return ""
        self._learn(self.frames[0].module, self.frames[0].path)  # the tree may have grown (a mixin added)
        entry = self._known(module)
        return entry[1] if entry is not None else f"?{type(module).__name__}"

    def _source(self, module: torch.nn.Module) -> SourceLocation | None:
        cls = type(module)
        if cls not in self._forward_sources:
            self._forward_sources[cls] = _location(cls.forward)
        return self._forward_sources[cls]

    # -- module hooks -------------------------------------------------------------------
    def pre(self, module: torch.nn.Module, args: tuple) -> None:
        rec = self.rec
        if not rec.recording():
            return
        path = self._path(module)
        frame = _Frame(module, path)
        parent = self.frames[-1] if self.frames else None
        layer_id = module.__dict__.get("layer_id")  # SAT layers, attention, MLP (no __getattr__ miss)
        frame.layer_id = layer_id if isinstance(layer_id, int) else (parent.layer_id if parent else None)
        if isinstance(module, self.BaseModel):
            if self.generation is not None and not self.frames:
                self._begin_step(frame)
            if self.want_hooks and not frame.suppressing:
                self._swap_hooks(frame)
            frame.adapter = self._adapter_for(type(module)) or (parent.adapter if parent is not None else None)
            frame.facts_cache = {}
        elif parent is not None:
            frame.adapter, frame.facts_cache = parent.adapter, parent.facts_cache
        if self.want_modules and not frame.suppressing:
            name = path if path else type(module).__name__
            frame.token, frame.record = rec.begin(
                "module", name, {"path": path, "class_name": type(module).__name__}, self._source(module))
        if self.hook_frames and (entry := self._known(module)) is not None and entry[2]:
            weights = self.hook_frames[-1].weights
            if path not in weights:
                weights.append(path)
        self.frames.append(frame)

    def post(self, module: torch.nn.Module, args: tuple, *rest: Any) -> None:
        if not self.frames or self.frames[-1].module is not module or threading.get_ident() != self.rec.thread:
            return
        frame = self.frames.pop()
        kwargs, result, error = _outcome(rest)
        if frame.record is not None:
            data = frame.record.data
            try:
                data["inputs"] = tensor_infos(args)
                data["outputs"] = tensor_infos(result) if error is None else []
                data["kwargs"] = self._kwargs_infos(kwargs)
            except Exception as e:  # noqa: BLE001 - an odd tensor subclass must not break the forward
                data["trace_error"] = f"{type(e).__name__}: {e}"
        if frame.token >= 0:
            self.rec.end(frame.token, error)
        if frame.wrapped is not None:
            self._restore_hooks(frame)
        if not self.frames and frame.adapter is not None and error is None and not frame.suppressing:
            self._forward_facts(frame, args, kwargs)
        if frame.step_token >= 0 or frame.suppressing:
            self._end_step(frame, kwargs, error)
            gen = self.generation
            if not self.frames and error is None and gen is not None and gen.root is module and self._summary_next(gen):
                self._lift(module)
        if not self.frames:
            self._kwarg_cache.clear()  # drop the references once the outermost forward is done

    def _summary_pre(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        """The root's pre-hook while the global pair is lifted: a summary step begins."""
        rec = self.rec
        if self.generation is None or self._summary is not None or not rec.recording():
            return
        frame = _Frame(module, "")
        self._begin_step(frame, summary=True)
        self._summary = frame

    def _summary_post(self, module: torch.nn.Module, args: tuple, *rest: Any) -> None:
        frame = self._summary
        if frame is None or frame.module is not module or threading.get_ident() != self.rec.thread:
            return
        self._summary = None
        kwargs, result, error = _outcome(rest)
        exc = sys.exc_info()[1]
        if error is None and result is None and exc is not None:
            # torch calls a module's own always_call hook registered with_kwargs as
            # hook(module, args, kwargs, None) when the forward raised (a global one gets 3 args).
            error = f"{type(exc).__name__}: {exc}"
        self._end_step(frame, kwargs, error)

    def _summary_next(self, gen: _Generation) -> bool:
        """Whether ``gen``'s next step is a summary step (beyond ``max_steps``)."""
        max_steps = self.rec.max_steps
        return max_steps is not None and gen.steps > max_steps

    def _forward_facts(self, frame: _Frame, args: tuple, kwargs: dict[str, Any]) -> None:
        """Facts the root model's adapter reads off a whole forward's inputs (CogVLM: the token
        layout of the first context forward), kept in the trace's metadata; first one wins."""
        try:
            facts = frame.adapter.forward_facts(args, kwargs)
        except Exception as e:  # noqa: BLE001 - a fact we cannot read must not break the traced forward
            facts = {"forward_facts_error": f"{type(e).__name__}: {e}"}
        for key, value in (facts or {}).items():
            self.rec.meta.setdefault(key, value)

    def _kwargs_infos(self, kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The tensor keyword arguments as TensorInfo JSON, one per tensor per outermost forward: SAT hands the
        same masks and ids to every layer, attention and MLP, so most are repeats. Keyed by the
        tensor object, which the caller's kwargs keep alive for the whole forward."""
        cache = self._kwarg_cache
        out: dict[str, dict[str, Any]] = {}
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor):
                hit = cache.get(id(value))
                if hit is None or hit[0] is not value:
                    hit = cache[id(value)] = (value, tensor_info(value))
                out[name] = hit[1]
        return out

    # -- SAT hooks ----------------------------------------------------------------------
    def _swap_hooks(self, frame: _Frame) -> None:
        model = frame.module
        original = model.__dict__.get("hooks")
        if not isinstance(original, dict):
            return
        # The wrapped dict is reused while the model keeps the same hooks dict (SAT builds a new
        # one in collect_hooks_, i.e. on every add_mixin/del_mixin): one per model, not per step.
        cached = self._wrapped_hooks.get(id(model))
        if cached is not None and cached[0] is model and cached[1] is original and cached[2] == frame.path:
            wrapped = cached[3]
        else:
            origins: dict[str, str] = getattr(model, "hook_origins", {}) or {}
            wrapped = {name: self._wrap(model, frame.path, name, fn, origins.get(name, "model"))
                       for name, fn in original.items()}
            self._wrapped_hooks[id(model)] = (model, original, frame.path, wrapped)
        model.__dict__["hooks"] = wrapped
        frame.swapped, frame.wrapped = original, wrapped

    def _restore_hooks(self, frame: _Frame) -> None:
        model = frame.module
        if model.__dict__.get("hooks") is frame.wrapped:
            model.__dict__["hooks"] = frame.swapped
        transformer = getattr(model, "transformer", None)
        shared = getattr(transformer, "hooks", None)
        assert frame.wrapped is not None and frame.swapped is not None
        if isinstance(shared, dict) and any(shared.get(k) is v for k, v in frame.wrapped.items()):
            shared.clear()
            shared.update(frame.swapped)
        frame.wrapped = frame.swapped = None

    def _wrap(self, model: Any, model_path: str, name: str, fn: Callable[..., Any],
              origin: str) -> Callable[..., Any]:
        served_by = origin.split(" -> ")[0]
        mixins = getattr(model, "mixins", {})
        server = mixins[served_by] if served_by in mixins else (model if served_by == "model" else None)
        static = {"hook": name, "served_by": served_by, "origin": origin,
                  "mixin_class": None if server is None else type(server).__name__, "model_path": model_path}
        source = _location(fn)  # once per hooks dict (see _swap_hooks), so not memoised
        rec = self.rec
        dispatch = self._dispatch

        def hooked(*args: Any, **kwargs: Any) -> Any:
            if not rec.recording():
                return fn(*args, **kwargs)
            return dispatch(fn, name, static, source, args, args, kwargs)

        return hooked

    def wrap_default(self, name: str, fn: types.FunctionType) -> Callable[..., Any]:
        """The recording code of SAT's default implementation of hook ``name``.

        Most defaults take the transformer as ``self`` first (not shown among the inputs);
        ``attention_fn_default`` takes the query, key and value tensors directly."""
        rec = self.rec
        source = _location(fn)
        runtime = self
        skip = 1 if fn.__code__.co_varnames[:1] == ("self",) else 0

        def default(*args: Any, **kwargs: Any) -> Any:
            if not rec.recording():
                return fn(*args, **kwargs)
            static = {"hook": name, "served_by": "default", "origin": "default", "mixin_class": None,
                      "model_path": runtime._model_path()}
            return runtime._dispatch(fn, name, static, source, args, args[skip:], kwargs)

        return default

    def _model_path(self) -> str | None:
        for frame in reversed(self.frames):
            if isinstance(frame.module, self.BaseModel):
                return frame.path
        return None

    def _dispatch(self, fn: Callable[..., Any], name: str, static: dict[str, Any],
                  source: SourceLocation | None, args: tuple, shown: tuple, kwargs: dict[str, Any]) -> Any:
        frame = self.frames[-1] if self.frames else None
        layer_id = _int_or_none(kwargs.get("layer_id"))
        if layer_id is None and frame is not None:
            layer_id = frame.layer_id
        layer_path = frame.path if frame is not None else None
        if frame is not None and layer_id is not None and isinstance(frame.module, self.BaseTransformer):
            layer_path = f"{frame.path}.layers.{layer_id}" if frame.path else f"layers.{layer_id}"
        data = dict(static)
        data.update(layer_id=layer_id, layer_path=layer_path)
        token, record = self.rec.begin("hook", name, data, source)
        if record is None:
            try:
                return fn(*args, **kwargs)
            finally:
                self.rec.end(token)
        hook_frame = _HookFrame()
        self.hook_frames.append(hook_frame)
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            self.rec.end(token, f"{type(e).__name__}: {e}")
            raise
        finally:
            self.hook_frames.pop()
            data["weights"] = hook_frame.weights
        try:
            data["inputs"] = tensor_infos(shown)
            data["outputs"] = tensor_infos(result)
            if frame is not None and frame.adapter is not None:
                facts = frame.adapter.dispatch_facts(name, kwargs, hook_frame.weights, frame.facts_cache)
                if facts:
                    data.update(facts)
        except Exception as e:  # noqa: BLE001 - never fail the traced call for a summary
            data["trace_error"] = f"{type(e).__name__}: {e}"
        self.rec.end(token)
        return result

    def _adapter_for(self, cls: type) -> Any:
        """The registered adapter of a model class (None: a model no adapter explains, e.g. the
        vision tower inside CogVLM, which inherits its parent's)."""
        if cls not in self._adapters:
            entry = entry_for_classes(c.__name__ for c in cls.__mro__)
            self._adapters[cls] = adapter_module(entry).ADAPTER if entry is not None else None
        return self._adapters[cls]

    # -- generation ---------------------------------------------------------------------
    def _begin_step(self, frame: _Frame, *, summary: bool = False) -> None:
        """Open the event of the step whose root forward ``frame`` is. A summary step (beyond
        ``max_steps``) is the step event alone: nothing under it is recorded."""
        gen = self.generation
        assert gen is not None
        step = gen.steps
        summary = summary or self._summary_next(gen)
        gen.steps += 1
        if gen.root is None:
            gen.root = frame.module
        if not summary:
            gen.recorded += 1
        phase = "context" if step == 0 else "step"
        frame.step_token, frame.step_record = self.rec.begin(
            "generation", "context" if step == 0 else f"step {step}",
            {"step": step, "phase": phase, "detail": "summary" if summary else "full", "tokens_fed": None,
             "context_length": gen.context_length, "sequence_length": None, "mems": None, "sampled_token": None})
        if summary:
            frame.suppressing = True
            self.rec.suppress += 1

    def _end_step(self, frame: _Frame, kwargs: dict[str, Any], error: str | None) -> None:
        gen = self.generation
        if frame.suppressing:
            self.rec.suppress -= 1
        input_ids = kwargs.get("input_ids")
        fed = input_ids.shape[1] if isinstance(input_ids, torch.Tensor) and input_ids.dim() >= 2 else None
        if gen is not None and isinstance(input_ids, torch.Tensor) and fed is not None:
            gen.take_sampled(input_ids)  # the token fed now is the one sampled after the last step
        if frame.step_token >= 0:
            self.rec.end(frame.step_token, error)
        record = frame.step_record
        if record is None or gen is None:
            return
        mems = kwargs.get("mems")
        cached = mems.shape[2] if isinstance(mems, torch.Tensor) and mems.dim() >= 3 else 0
        if record.data["step"] == 0 and fed is not None:
            gen.context_length = cached + fed
        record.data.update(tokens_fed=fed, context_length=gen.context_length,
                           sequence_length=None if fed is None else cached + fed,
                           mems=tensor_info(mems) if isinstance(mems, torch.Tensor) else None)
        gen.previous = record

    def _finish_generation(self, gen: _Generation, tokens: Any) -> None:
        """The last step's sampled token is the last token of the returned sequence."""
        if isinstance(tokens, torch.Tensor) and tokens.dim() == 2:
            gen.take_sampled(tokens)

    def wrap_filling(self, original: types.FunctionType) -> Callable[..., Any]:
        runtime = self
        rec = self.rec

        def filling_sequence(*args: Any, **kwargs: Any) -> Any:
            if not rec.recording():
                return original(*args, **kwargs)
            gen, outer = _Generation(), runtime.generation
            runtime.generation = gen
            strategy = kwargs.get("strategy", args[3] if len(args) > 3 else None)
            token, record = rec.begin("generation", "filling_sequence", {
                "function": original.__name__, "phase": "call",
                "strategy": None if strategy is None else type(strategy).__name__},
                SourceLocation.of_frame(sys._getframe(2)))
            error = None
            try:
                result = original(*args, **kwargs)
                runtime._finish_generation(gen, result[0] if isinstance(result, tuple) and result else None)
                return result
            except BaseException as e:
                error = f"{type(e).__name__}: {e}"
                raise
            finally:
                runtime._land()
                runtime.generation = outer
                if record is not None:
                    record.data.update(steps=gen.steps, recorded_steps=gen.recorded,
                                       context_length=gen.context_length, sampled_tokens=gen.sampled)
                rec.end(token, error)

        return filling_sequence

    def wrap_stream(self, original: types.FunctionType) -> Callable[..., Any]:
        runtime = self

        def stream_filling_sequence(*args: Any, **kwargs: Any) -> Any:
            inner = original(*args, **kwargs)
            if not runtime.rec.recording():
                return inner
            return runtime._drive(inner)

        return stream_filling_sequence

    def _drive(self, inner: Iterator[Any]) -> Iterator[Any]:
        """Run a streaming generator with its steps recorded (no enclosing event: the
        caller's code runs between yields)."""
        gen = _Generation()
        try:
            while True:
                outer, self.generation = self.generation, gen
                if gen.root is not None and self._summary_next(gen):
                    self._lift(gen.root)
                try:
                    item = next(inner)
                except StopIteration:
                    return
                finally:
                    self._land()  # the caller's code between two tokens is traced in full
                    self.generation = outer
                self._finish_generation(gen, item[0] if isinstance(item, tuple) and item else None)
                yield item
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()

    # -- teardown -----------------------------------------------------------------------
    def unwind(self) -> None:
        """After an interrupt mid-forward: put back every hooks dict still swapped, remove the
        root model's hook pair of summary steps."""
        self._land(reattach=False)
        if self._summary is not None:
            if self._summary.suppressing:
                self.rec.suppress -= 1
            self._summary = None
        while self.frames:
            frame = self.frames.pop()
            if frame.wrapped is not None:
                self._restore_hooks(frame)
            if frame.suppressing:
                self.rec.suppress -= 1
        self.hook_frames.clear()
        self.generation = None
        self._wrapped_hooks.clear()
        self._kwarg_cache.clear()


def install(recorder: Recorder) -> Callable[[], None]:
    """Start runtime tracing for ``recorder``; returns the function that stops it."""
    import sat.generation.autoregressive_sampling as sampling

    runtime = _Runtime(recorder)
    patches = PatchSet()

    def uninstall() -> None:
        try:
            runtime.detach()
        finally:
            try:
                runtime.unwind()
            finally:
                patches.undo()

    try:
        if runtime.want_hooks:
            for name, fn in _default_hooks().items():
                patches.swap_code(fn, functools.partial(runtime.wrap_default, name))
        patches.swap_code(sampling.filling_sequence, runtime.wrap_filling)
        patches.swap_code(sampling.stream_filling_sequence, runtime.wrap_stream)
        runtime.attach()
    except BaseException:
        uninstall()
        raise
    return uninstall


def _default_hooks() -> dict[str, types.FunctionType]:
    """{hook name: SAT's default implementation}, e.g. ``mlp_forward: mlp_forward_default``."""
    from sat.transformer_defaults import HOOKS_DEFAULT

    return {name: fn for name, fn in HOOKS_DEFAULT.items() if isinstance(fn, types.FunctionType)}


def runtime_functions() -> list[types.FunctionType]:
    """Functions whose code the runtime swaps (what leak tests check)."""
    import sat.generation.autoregressive_sampling as sampling

    return [sampling.filling_sequence, sampling.stream_filling_sequence, *_default_hooks().values()]
