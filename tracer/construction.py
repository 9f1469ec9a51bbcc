"""Construction tracing: every call of SAT's model-building API, as nested events.

What is patched (for the duration of a recording only; see :mod:`tracer.patching` for how
and why the functions' code is swapped in place rather than module attributes replaced):

* functions: ``sat.model.base_model.get_model``, ``sat.arguments.update_args_with_file``,
  ``overwrite_args_by_dict``, ``get_args`` (the training-script parser) and
  ``sat.training.model_io.load_checkpoint``;
* on ``BaseModel`` and every subclass (SAT's official models, ours, upstream CogVLM's from
  a user's checkout — found through ``__subclasses__()`` at start, and through a temporary
  ``__init_subclass__`` for classes created during the recording): ``__init__``,
  ``add_mixin``, ``del_mixin``, ``get_args``, ``from_pretrained``, ``from_pretrained_base``
  where the class defines them;
* ``AutoModel.from_pretrained`` / ``from_pretrained_base``;
* the constructor of every ``BaseMixin`` subclass. ``BaseMixin.__init__`` itself (empty) is
  recorded only for mixin classes that do not define their own.

Each event's ``data`` is documented in ``docs/trace-schema.md``. A Namespace argument is
shown as the keys that differ from the defaults of the model class in play (that class's
``get_args()``), because the full Namespace has ~100 keys and the differences are the story.
"""

from __future__ import annotations

import argparse
import inspect as inspect_flags
import sys
import types
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .patching import PatchSet
from .schema import SourceLocation
from .sink import Record, Recorder
from .values import count_parameters, describe_model, module_paths, namespace_diff, short

__all__ = ["construction_functions", "install"]



@dataclass(frozen=True)
class Role:
    """What one SAT construction function is, for the recording: the table below replaces
    string tests spread over the recording code."""

    kind: str  # "function" (module level), "method" (model/mixin), "classmethod"
    mixin: bool = False  # add_mixin / del_mixin: parameter delta and hook tables before/after
    transforms_args: bool = False  # Namespace in, Namespace out: the event shows what changed
    offers_model: bool = False  # the model it builds or loads may be the trace's primary model
    model_class_arg: str = ""  # the argument naming the model class (get_model's model_cls)
    model_arg: str = ""  # the argument holding the model (load_checkpoint's model)
    returns_model: bool = False  # its result is the model (get_model)


ROLES: dict[str, Role] = {
    # sat.model.base_model / sat.arguments / sat.training.model_io
    "get_model": Role("function", offers_model=True, model_class_arg="model_cls", returns_model=True),
    "update_args_with_file": Role("function", transforms_args=True),
    "overwrite_args_by_dict": Role("function", transforms_args=True),
    "get_args": Role("function"),  # sat.arguments.get_args; BaseModel.get_args is the classmethod below
    "load_checkpoint": Role("function", offers_model=True, model_arg="model"),
    # BaseModel (and subclasses); BaseMixin subclasses only have __init__
    "__init__": Role("method", offers_model=True),
    "add_mixin": Role("method", mixin=True),
    "del_mixin": Role("method", mixin=True),
    # BaseModel and AutoModel class methods
    "from_pretrained": Role("classmethod", offers_model=True),
    "from_pretrained_base": Role("classmethod", offers_model=True),
}
_METHODS = tuple(name for name, role in ROLES.items() if role.kind == "method")
_CLASSMETHODS = ("get_args", *(name for name, role in ROLES.items() if role.kind == "classmethod"))
_MIXIN_METHODS = tuple(name for name, role in ROLES.items() if role.mixin)
_NAMESPACE_CLIP = 300


def _subclasses(cls: type) -> Iterator[type]:
    seen: set[type] = set()
    stack: list[type] = [cls]
    while stack:
        sub: type
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                yield sub


def construction_functions() -> list[types.FunctionType]:
    """The module-level SAT functions we patch (what leak tests check)."""
    import sat.arguments as arguments
    import sat.model.base_model as base_model
    import sat.training.model_io as model_io

    return [base_model.get_model, arguments.update_args_with_file, arguments.overwrite_args_by_dict,
            arguments.get_args, model_io.load_checkpoint]


def _source(frame: types.FrameType | None) -> SourceLocation | None:
    return None if frame is None else SourceLocation.of_frame(frame)


def _defined_at(func: types.FunctionType) -> str:
    return f"{func.__code__.co_filename}:{func.__code__.co_firstlineno}"


# ``vars(cls.get_args())`` per model class: SAT parses an empty argument list, so the result
# depends only on the class. Kept across recordings; a class that goes away drops out.
_DEFAULTS: weakref.WeakKeyDictionary[type, dict[str, Any] | None] = weakref.WeakKeyDictionary()


class _Construction:
    """The patch set and the per-recording caches (signatures, Namespace summaries)."""

    def __init__(self, recorder: Recorder) -> None:
        from sat.model.base_model import AutoModel, BaseMixin, BaseModel

        self.rec = recorder
        self.patches = PatchSet()
        self.BaseModel = BaseModel
        self.BaseMixin = BaseMixin
        self.AutoModel = AutoModel
        self._classes: set[type] = set()
        self._reference: type | None = None  # class whose defaults explain a bare Namespace
        # Model __init__s running now: the outermost one's model can be the trace's primary
        # model. Counted apart from the records, which a depth filter may leave out.
        self._init_depth = 0
        self._namespaces: dict[int, tuple[Any, Any, dict[str, Any], str, dict[str, str]]] = {}

    # -- installing ---------------------------------------------------------------------
    def install(self) -> None:
        for func in construction_functions():
            self._swap(func, kind="function")
        for cls in (self.BaseModel, *_subclasses(self.BaseModel), self.AutoModel,
                    self.BaseMixin, *_subclasses(self.BaseMixin)):
            self.patch_class(cls)
        for base in (self.BaseModel, self.BaseMixin):
            self._watch_subclasses(base)

    def patch_class(self, cls: type) -> None:
        """Patch the construction methods ``cls`` defines itself (idempotent)."""
        if cls in self._classes:
            return
        self._classes.add(cls)
        is_model = issubclass(cls, self.BaseModel)
        names = (_METHODS if is_model else ("__init__",)) if cls is not self.AutoModel else ()
        for name in names:
            func = cls.__dict__.get(name)
            if isinstance(func, types.FunctionType):
                self._swap(func, kind="method")
        if is_model or cls is self.AutoModel:
            for name in _CLASSMETHODS:
                attr = cls.__dict__.get(name)
                if isinstance(attr, classmethod) and isinstance(attr.__func__, types.FunctionType):
                    self._swap(attr.__func__, kind="classmethod")
        if not is_model and cls is not self.AutoModel:
            for name in _MIXIN_METHODS:  # a mixin class never defines these, but be exact
                func = cls.__dict__.get(name)
                if isinstance(func, types.FunctionType):
                    self._swap(func, kind="method")

    def ensure_class(self, cls: Any) -> None:
        """Patch ``cls`` and its bases before it is instantiated (a class whose own
        ``__init_subclass__`` hid it from our watcher)."""
        if isinstance(cls, type) and issubclass(cls, (self.BaseModel, self.BaseMixin)):
            for klass in cls.__mro__:
                if isinstance(klass, type) and issubclass(klass, (self.BaseModel, self.BaseMixin)):
                    self.patch_class(klass)

    def _watch_subclasses(self, base: type) -> None:
        """Give ``base`` a temporary ``__init_subclass__`` that patches classes created
        during the recording (removed again by :meth:`PatchSet.undo`)."""
        construction = self
        previous = base.__dict__.get("__init_subclass__")

        def __init_subclass__(cls: type, **kwargs: Any) -> None:
            if isinstance(previous, classmethod):
                previous.__func__(cls, **kwargs)
            else:
                super(base, cls).__init_subclass__(**kwargs)  # type: ignore[arg-type, misc]
            construction.patch_class(cls)

        self.patches.set_attr(base, "__init_subclass__", classmethod(__init_subclass__))

    def _swap(self, func: types.FunctionType, kind: str) -> None:
        self.patches.swap_code(func, lambda original: self._wrapper(func, original, kind))

    # -- recording ----------------------------------------------------------------------
    def _wrapper(self, func: types.FunctionType, original: types.FunctionType,
                 kind: str) -> Callable[..., Any]:
        rec = self.rec
        # "LLaMAModel.__init__"; a class defined in a function keeps only "Class.method".
        qualname = ".".join(func.__qualname__.split(".")[-2:]) if kind != "function" else func.__name__
        short_name = func.__name__
        defined_at = _defined_at(original)
        is_base_mixin_init = func is self.BaseMixin.__dict__.get("__init__")
        construction = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not rec.recording():
                return original(*args, **kwargs)
            subject = args[0] if kind == "method" and args else None
            if is_base_mixin_init and subject is not None and "__init__" in type(subject).__dict__:
                return original(*args, **kwargs)  # the subclass's own __init__ is the event
            # Frame 0 is this wrapper, 1 the trampoline in the patched function, 2 its caller.
            source = _source(sys._getframe(2))
            try:
                data, state = construction._before(func, original, kind, short_name, defined_at, args, kwargs)
            except Exception as e:  # noqa: BLE001 - a summary we cannot make must not break the call
                data, state = _unsummarised(short_name, defined_at, e), {"failed": True}
            token, record = rec.begin("construction", qualname, data, source, subject=subject)
            model_init = short_name == "__init__" and isinstance(subject, construction.BaseModel)
            construction._init_depth += model_init
            try:
                result = original(*args, **kwargs)
            except BaseException as e:
                rec.end(token, error=f"{type(e).__name__}: {e}")
                raise
            finally:
                construction._init_depth -= model_init
            if record is not None and "failed" not in state:
                try:
                    construction._after(record, short_name, kind, args, result, state)
                except Exception as e:  # noqa: BLE001 - as above
                    record.data["trace_error"] = f"{type(e).__name__}: {e}"
            construction._note_model(short_name, kind, args, result)
            rec.end(token)
            return result

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        return wrapper

    def defaults(self, cls: type | None) -> dict[str, Any] | None:
        """``vars(cls.get_args())`` computed once per class, unrecorded."""
        if cls is None or not isinstance(cls, type) or not issubclass(cls, self.BaseModel):
            return None
        if cls not in _DEFAULTS:
            try:
                with self.rec.suppressed():
                    _DEFAULTS[cls] = dict(vars(cls.get_args()))  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a user class whose get_args needs more
                _DEFAULTS[cls] = None
        defaults = _DEFAULTS[cls]
        return None if defaults is None else dict(defaults)

    def _reference_class(self, short_name: str, kind: str, args: tuple, bound: dict[str, Any]) -> type | None:
        if kind == "classmethod" and args and isinstance(args[0], type):
            return args[0] if issubclass(args[0], self.BaseModel) else None
        if kind == "method" and args:
            owner = type(args[0])
            return owner if issubclass(owner, self.BaseModel) else None
        role = ROLES.get(short_name)
        if role is not None and role.model_class_arg:
            cls = bound.get(role.model_class_arg)
            return cls if isinstance(cls, type) else None
        if role is not None and role.model_arg:
            model = bound.get(role.model_arg)
            return type(model) if model is not None and isinstance(model, self.BaseModel) else None
        return None

    def _namespace(self, ns: argparse.Namespace, reference: type | None) -> tuple[str, dict[str, str]]:
        # The same Namespace goes to get_model and each __init__ of the chain: summarise it
        # again only if its contents (or the class it is compared with) changed.
        snapshot = dict(vars(ns))
        cached = self._namespaces.get(id(ns))
        if cached is not None and cached[0] is ns and cached[1] is reference and cached[2] == snapshot:
            return cached[3], cached[4]
        text, diff = self._summarise(ns, reference)
        self._namespaces[id(ns)] = (ns, reference, snapshot, text, diff)
        return text, diff

    def _summarise(self, ns: argparse.Namespace, reference: type | None) -> tuple[str, dict[str, str]]:
        defaults = self.defaults(reference)
        diff = namespace_diff(ns, defaults)
        body = ", ".join(f"{k}={v}" for k, v in diff.items())
        text = f"Namespace({body})" if body else "Namespace(defaults)"
        if len(text) > _NAMESPACE_CLIP:
            text = text[: _NAMESPACE_CLIP - 2] + "…)"
        return text, diff

    def _before(self, func: types.FunctionType, original: types.FunctionType, kind: str, short_name: str,
                defined_at: str, args: tuple, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        bound = _bind(original.__code__, args, kwargs)
        if kind in ("method", "classmethod") and bound:
            bound.pop(next(iter(bound)))  # self / cls
        subject = args[0] if kind in ("method", "classmethod") and args else None
        owner = None
        if subject is not None:
            owner = subject.__name__ if isinstance(subject, type) else type(subject).__name__
        role = ROLES.get(short_name, Role(kind))
        if role.model_class_arg and isinstance(bound.get(role.model_class_arg), type):
            self.ensure_class(bound[role.model_class_arg])
        if kind == "classmethod" and isinstance(subject, type):
            self.ensure_class(subject)

        reference = self._reference_class(short_name, kind, args, bound)
        if reference is not None:
            self._reference = reference
        else:
            reference = self._reference
        summaries: dict[str, str] = {}
        namespaces: dict[str, dict[str, str]] = {}
        state: dict[str, Any] = {"reference": reference}
        for name, value in bound.items():
            if isinstance(value, argparse.Namespace):
                summaries[name], namespaces[name] = self._namespace(value, reference)
                if role.transforms_args and "input" not in state:
                    state["input"] = dict(vars(value))
            else:
                summaries[name] = short(value)
        data: dict[str, Any] = {"function": short_name, "owner": owner, "model_path": None,
                                "args": summaries, "defined_at": defined_at}
        if namespaces:
            data["namespaces"] = namespaces
        if reference is not None and namespaces:
            data["defaults_of"] = reference.__name__
        if role.mixin and kind == "method" and args:
            model = args[0]
            mixin_name: Any = bound.get("name")
            data["mixin"] = mixin_name
            if short_name == "add_mixin":
                mixin = bound.get("new_mixin")
            else:
                mixin = model.mixins[mixin_name] if mixin_name in getattr(model, "mixins", {}) else None
            data["mixin_class"] = None if mixin is None else type(mixin).__name__
            seen: set[int] = set()
            data["params_before"] = count_parameters(model, seen)
            if (func is self.BaseModel.__dict__.get("add_mixin") and isinstance(mixin, self.BaseMixin)
                    and not bound.get("reinit")):
                # SAT's add_mixin only registers the mixin (reinit=False): what it adds is the
                # mixin's parameters that the model does not hold already.
                state["params_after"] = data["params_before"] + count_parameters(mixin, seen)
            data["hooks_before"] = dict(getattr(model, "hook_origins", {}))
        return data, state

    def _after(self, record: Record, short_name: str, kind: str, args: tuple, result: Any,
               state: dict[str, Any]) -> None:
        data = record.data
        reference = state["reference"]
        if isinstance(result, argparse.Namespace):
            text, diff = self._namespace(result, reference)
            data["result"] = text
            if "input" in state:
                data["changed"] = namespace_diff(result, state["input"])
        elif short_name == "__init__" and args:
            data["params"] = count_parameters(args[0])
            data["result"] = describe_model(args[0], data["params"])
        elif isinstance(result, self.BaseModel):
            data["result"] = describe_model(result)
        elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], argparse.Namespace):
            first = describe_model(result[0]) if isinstance(result[0], self.BaseModel) else short(result[0])
            data["result"] = f"({first}, Namespace({len(vars(result[1]))} keys))"
        else:
            data["result"] = short(result)
        role = ROLES.get(short_name, Role(kind))
        if role.mixin and kind == "method" and args:
            data["params_after"] = state["params_after"] if "params_after" in state else count_parameters(args[0])
            data["hooks_after"] = dict(getattr(args[0], "hook_origins", {}))
        model = self._model_of(short_name, kind, args, result)
        if model is not None and (role.kind == "function" or isinstance(result, tuple)):
            record.subject = weakref.ref(model)

    def _model_of(self, short_name: str, kind: str, args: tuple, result: Any) -> Any:
        """The model a construction call built, loaded or worked on, if any."""
        model = None
        role = ROLES.get(short_name, Role(kind))
        if role.returns_model:
            model = result
        elif isinstance(result, tuple) and result and isinstance(result[0], self.BaseModel):
            model = result[0]
        elif (kind == "method" or role.model_arg) and args and isinstance(args[0], self.BaseModel):
            model = args[0]
        return model if isinstance(model, self.BaseModel) else None

    def _note_model(self, short_name: str, kind: str, args: tuple, result: Any) -> None:
        """Offer a built or loaded model as the trace's primary model (the first one wins), and
        resolve the events' model paths while it is surely alive. Runs whether or not the call
        was recorded: ``max_depth`` must not decide which model the trace describes."""
        if not ROLES.get(short_name, Role(kind)).offers_model:
            return
        if short_name == "__init__" and self._init_depth > 0:
            return  # a model built inside another model's __init__ (the vision tower)
        model = self._model_of(short_name, kind, args, result)
        if model is not None:
            self.rec.add_model(model)
            self._resolve([model])

    # -- finishing ----------------------------------------------------------------------
    def resolve_paths(self, rec: Recorder) -> None:
        """Fill ``model_path`` (where each subject sits under its root model) for the events
        not resolved yet, then drop the weak references."""
        subjects = [r.subject() for r in rec.records if r.subject is not None]
        self._resolve([s for s in subjects if isinstance(s, self.BaseModel)])
        for record in rec.records:
            record.subject = None

    def _resolve(self, models: list[Any]) -> None:
        pending = []
        for r in self.rec.records:
            if r.subject is None or r.category != "construction" or r.data.get("model_path") is not None:
                continue
            if r.subject() is None:  # gone (a deleted mixin): it can never be placed, stop asking
                r.subject = None
                continue
            pending.append(r)
        if len(models) == 1:  # the usual case: the model's own events sit at its root, no walk needed
            for record in pending:
                if record.subject is not None and record.subject() is models[0]:
                    record.data["model_path"] = ""
            pending = [r for r in pending if r.data.get("model_path") is None]
        if not pending:
            return
        maps: list[dict[int, str]] = []
        seen: set[int] = set()
        for model in models:
            if id(model) in seen:
                continue
            seen.add(id(model))
            maps.append(module_paths(model))
        # Keep the maps of roots only: a model that appears inside another model's map is nested.
        root_maps = [m for m in maps if not any(other is not m and next(iter(m)) in other for other in maps)]
        for record in pending:
            obj = record.subject() if record.subject is not None else None
            if obj is not None:
                for path_map in root_maps:
                    if id(obj) in path_map:
                        record.data["model_path"] = path_map[id(obj)]
                        break


def _unsummarised(short_name: str, defined_at: str, error: Exception) -> dict[str, Any]:
    return {"function": short_name, "owner": None, "model_path": None, "args": {}, "defined_at": defined_at,
            "trace_error": f"{type(error).__name__}: {error}"}


def _bind(code: types.CodeType, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """{parameter: value} for a call, in signature order, with ``**kwargs`` entries flattened
    in; read from the code object (``inspect.signature`` costs ~10x more per call)."""
    names = code.co_varnames
    n_pos, n_kw = code.co_argcount, code.co_kwonlyargcount
    positional, keyword_only = names[:n_pos], names[n_pos:n_pos + n_kw]
    index = n_pos + n_kw
    star = names[index] if code.co_flags & inspect_flags.CO_VARARGS else None
    if star is not None:
        index += 1
    star_star = names[index] if code.co_flags & inspect_flags.CO_VARKEYWORDS else None
    bound: dict[str, Any] = dict(zip(positional, args[:n_pos], strict=False))
    if len(args) > n_pos:
        bound[star or "*args"] = args[n_pos:]
    extra: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in positional or key in keyword_only:
            bound[key] = value
        else:
            extra[key] = value
    order = {name: i for i, name in enumerate((*positional, star or "*args", *keyword_only))}
    ordered = dict(sorted(bound.items(), key=lambda item: order.get(item[0], len(order))))
    if star_star is None and extra:
        ordered["**kwargs"] = extra
    ordered.update(extra if star_star is not None else {})
    return ordered


def install(recorder: Recorder) -> Callable[[], None]:
    """Patch SAT's construction API for ``recorder``; returns the undo function."""
    construction = _Construction(recorder)
    try:
        construction.install()
    except BaseException:
        construction.patches.undo()
        raise
    recorder.finalizers.append(construction.resolve_paths)
    return construction.patches.undo
