"""Reversible monkeypatches: swap a function's code in place, or set an attribute, then undo.

Why swap ``__code__`` instead of replacing module attributes? A construction call must be
caught however the caller got hold of the function: ``from sat.model import get_model``
executed before tracing started binds the *function object* into the caller's namespace,
and SAT itself keeps references in other places (``sat.model.base_model`` imports
``update_args_with_file`` and ``load_checkpoint``; ``collect_hooks_`` stores bound hooks in
``functools.partial`` objects). Replacing attributes would have to find and restore every
such reference — a scan of ``sys.modules`` finds module globals only, and costs tens of
milliseconds with torch, deepspeed and transformers loaded. Swapping the code keeps the
function object (so every reference, however obtained, now calls the wrapper) and undoing
it is one assignment back: after :meth:`PatchSet.undo` each function's ``__code__`` and
``__kwdefaults__`` are the original objects again (tests check with ``is``).

How: the function's code becomes a *trampoline* ``(*args, __cogtrace_target__, **kwargs)``
that forwards to the wrapper, which it finds in ``__kwdefaults__`` (function state, not
code, so no global name is injected anywhere). The trampoline has as many free variables as
the original (e.g. the ``__class__`` cell of a method that calls ``super()``), as CPython
requires. The wrapper calls a *copy* of the original function built from the original
code, globals, defaults and closure, so the traced call runs exactly the same bytecode.

Known trade-off: during the patch, ``inspect.signature`` of a patched function shows the
trampoline's ``(*args, **kwargs)``; SAT only inspects hook signatures, never these.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import TracingError

__all__ = ["PatchSet", "copy_function", "is_trampoline"]

_TARGET = "__cogtrace_target__"
_MISSING = object()
_trampolines: dict[int, types.CodeType] = {}


def _trampoline_code(n_free: int) -> types.CodeType:
    """Code of ``def f(*args, __cogtrace_target__, **kwargs): return target(*args, **kwargs)``
    with ``n_free`` free variables (never read), cached per count."""
    code = _trampolines.get(n_free)
    if code is None:
        names = [f"_cell{i}" for i in range(n_free)]
        lines = ["def _outer():"]
        lines += [f"    {name} = None" for name in names]
        lines.append(f"    def _cogtrace_trampoline(*args, {_TARGET}, **kwargs):")
        if names:
            # Dead code still makes the names free variables (the symbol table is built
            # before the optimiser removes the block), and it never reads a possibly empty cell.
            lines.append("        if False:")
            lines.append(f"            {', '.join(names)}")
        lines.append(f"        return {_TARGET}(*args, **kwargs)")
        lines.append("    return _cogtrace_trampoline")
        namespace: dict[str, Any] = {}
        exec(compile("\n".join(lines), "<cogtrace trampoline>", "exec"), namespace)  # noqa: S102
        code = namespace["_outer"]().__code__
        if len(code.co_freevars) != n_free:  # pragma: no cover - CPython guarantees this today
            raise RuntimeError(f"trampoline has {len(code.co_freevars)} free variables, expected {n_free}")
        _trampolines[n_free] = code
    return code


def is_trampoline(func: types.FunctionType) -> bool:
    """True when ``func`` currently runs our trampoline instead of its own code."""
    return func.__code__ in _trampolines.values() or _TARGET in (func.__kwdefaults__ or {})


def copy_function(func: types.FunctionType) -> types.FunctionType:
    """A new function object running ``func``'s current code with its globals, defaults
    and closure: calling it is calling the original, whatever later happens to ``func``."""
    clone = types.FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
    clone.__kwdefaults__ = dict(func.__kwdefaults__) if func.__kwdefaults__ else None
    clone.__qualname__ = func.__qualname__
    clone.__module__ = func.__module__
    clone.__doc__ = func.__doc__
    clone.__dict__.update(func.__dict__)
    return clone


@dataclass
class _CodeSwap:
    func: types.FunctionType
    code: types.CodeType
    kwdefaults: dict[str, Any] | None


@dataclass
class _AttrSet:
    owner: Any
    name: str
    previous: Any  # _MISSING when the attribute was not in owner.__dict__


@dataclass
class PatchSet:
    """Patches applied by one recording, undone in reverse order by :meth:`undo`.

    Each function is patched at most once per set (a second request is ignored), so
    installing is idempotent; :meth:`undo` is idempotent as well.
    """

    _swaps: list[_CodeSwap] = field(default_factory=list)
    _attrs: list[_AttrSet] = field(default_factory=list)
    _patched: set[int] = field(default_factory=set)

    def swap_code(self, func: types.FunctionType,
                  make_wrapper: Callable[[types.FunctionType], Callable[..., Any]]) -> bool:
        """Route every call of ``func`` through ``make_wrapper(original_copy)``.

        Returns False (and changes nothing) when ``func`` is already patched by this set or
        is not a plain Python function.
        """
        if not isinstance(func, types.FunctionType) or id(func) in self._patched:
            return False
        if is_trampoline(func):
            # Another recording's patch is still in place (it was never undone, or two recordings
            # interleaved): copying it as "the original" would make the leak permanent.
            raise TracingError(f"{func.__module__}.{func.__qualname__} is still patched by another tracing "
                               "session (its code is cogvlm-tracer's trampoline); refusing to patch it again")
        original = copy_function(func)
        wrapper = make_wrapper(original)
        n_free = len(func.__code__.co_freevars)
        self._swaps.append(_CodeSwap(func, func.__code__, func.__kwdefaults__))
        self._patched.add(id(func))
        func.__kwdefaults__ = {_TARGET: wrapper}
        func.__code__ = _trampoline_code(n_free)
        return True

    def set_attr(self, owner: Any, name: str, value: Any) -> None:
        """``setattr(owner, name, value)``, remembering what ``owner.__dict__`` held before."""
        previous = vars(owner).get(name, _MISSING)
        self._attrs.append(_AttrSet(owner, name, previous))
        setattr(owner, name, value)

    def undo(self) -> None:
        """Put every original back, newest first. Never raises half-way: each undo is one
        assignment of an object we kept."""
        while self._attrs:
            patch = self._attrs.pop()
            if patch.previous is _MISSING:
                if patch.name in vars(patch.owner):
                    delattr(patch.owner, patch.name)
            else:
                setattr(patch.owner, patch.name, patch.previous)
        while self._swaps:
            swap = self._swaps.pop()
            swap.func.__code__ = swap.code
            swap.func.__kwdefaults__ = swap.kwdefaults
        self._patched.clear()
