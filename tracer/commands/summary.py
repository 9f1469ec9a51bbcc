"""``cogtrace summary CONFIG``: torchinfo's summary of a tiny model next to ours, and what differs.

torchinfo is the standard "what shapes flow through my model" tool, and it is good at it for
ordinary ``nn.Module`` trees. SAT models are not ordinary: behaviour is swapped in through a
``hooks`` dict of plain functions, the vision tower's layers are run by a ``layer_forward``
hook instead of their own ``forward``, and vision-expert weights live in mixins but are called
from inside a language layer. This command runs the same real tiny forward (the sample image
and a grounding prompt) under torchinfo and under cogtrace and prints both, followed by
the measured differences (:func:`measure`, also used by ``scripts/compare_torchinfo.py``).

This is a command, not a renderer: it imports torch, SAT and torchinfo.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

QUERY = "Where is the dog?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default="configs/tiny/cogvlm-grounding-generalist",
                        help="a tiny config (default configs/tiny/cogvlm-grounding-generalist)")
    parser.add_argument("--depth", type=int, default=10, help="torchinfo depth (default 10: everything)")
    parser.add_argument("--width", type=int, default=150, help="width of cogtrace's tables (default 150)")
    parser.add_argument("--seed", type=int, default=1234, help="seed for the tiny weights")


@dataclass
class Comparison:
    """What each tool reported for one forward; every number measured, none assumed."""

    torchinfo_text: str
    cogtrace_text: str
    torchinfo_rows: int
    torchinfo_recursive_rows: int  # rows torchinfo marks "(recursive)": a module re-entered from a hook
    torchinfo_total_params: int
    torchinfo_rows_naming_hooks: int  # rows that name a SAT hook (always 0: hooks are not modules)
    torchinfo_none_kwarg_error: str  # what torchinfo raises when an input dict holds None ('' if nothing)
    layers_without_shapes: list[str] = field(default_factory=list)  # param-carrying rows with no shapes
    text_only_missing: list[str] = field(default_factory=list)  # param modules absent from torchinfo (text-only)
    text_only_missing_params: int = 0
    cogtrace_total_params: int = 0
    hook_dispatches: int = 0
    hook_dispatches_by_mixin: dict[str, int] = field(default_factory=dict)
    expert_attributions: list[tuple[str, str]] = field(default_factory=list)  # (weights, layer served)
    vision_tokens: int = 0
    language_tokens: int = 0
    construction_calls: int = 0
    mixin_calls: int = 0


def _quiet() -> contextlib.AbstractContextManager[Any]:
    """SAT prints build banners on stdout; keep this command's output to the two summaries."""
    return contextlib.redirect_stdout(io.StringIO())


def _torchinfo(model: Any, kwargs: dict[str, Any], depth: int) -> Any:
    import torch
    import torchinfo

    # torchinfo sums tensor sizes over the input dict and fails on a None value
    # (vision_position_ids=None is normal for SAT); pass those through **kwargs instead.
    data = {k: v for k, v in kwargs.items() if v is not None}
    extra: dict[str, Any] = {k: v for k, v in kwargs.items() if v is None}
    with torch.no_grad():
        return torchinfo.summary(model, input_data=data, depth=depth, verbose=0,
                                 col_names=("input_size", "output_size", "num_params"), **extra)


def _none_kwarg_error(model: Any, kwargs: dict[str, Any]) -> str:
    """What happens when the input dict is given to torchinfo as is."""
    import torch
    import torchinfo

    if not any(v is None for v in kwargs.values()):
        return ""
    try:
        with torch.no_grad():
            torchinfo.summary(model, input_data=kwargs, depth=1, verbose=0)
    except Exception as e:  # noqa: BLE001 - we report whatever torchinfo raises
        return f"{type(e).__name__}: {e}"
    return ""


def measure(config_spec: str, *, depth: int = 10, width: int = 150, seed: int = 1234) -> Comparison:
    """Run both tools on the same model and inputs and count what each one shows."""
    from ..adapters import adapter_for_config
    from ..render.common import HOOK_NAMES
    from ..render.hooks import render_hooks
    from ..render.modules import render_modules
    from ..session import trace as record

    adapter = adapter_for_config(config_spec)
    config = adapter.load_config(config_spec)
    os.environ.setdefault("SAT_LOG_LEVEL", "ERROR")
    with _quiet(), record(None, categories=("construction",)) as built:
        model = adapter.build(config, device="cpu", seed=seed).model
    construction = built.trace
    kwargs = adapter.prompt_inputs(config, QUERY)
    with _quiet():
        stats = _torchinfo(model, kwargs, depth)
        none_error = _none_kwarg_error(model, kwargs)
        text_stats = _torchinfo(model, adapter.prompt_inputs(config, QUERY, with_image=False), depth)
    import torch

    with _quiet(), torch.no_grad(), record(None, categories=("module", "hook")) as ran:
        model(**kwargs)
    assert ran.trace is not None and construction is not None
    # Ours: the module tree with the construction-time view, plus the runtime events. Both
    # recordings number their events from 0: shift the second so ids and parents stay unique.
    import dataclasses

    from ..schema import Trace

    shift = 1 + max((e.id for e in construction.events), default=-1)
    runtime_events = tuple(dataclasses.replace(e, id=e.id + shift, parent=None if e.parent is None else e.parent + shift)
                           for e in ran.trace.events)
    ours = Trace(events=construction.events + runtime_events, modules=ran.trace.modules, hooks=ran.trace.hooks,
                 meta=ran.trace.meta)
    ours_text = render_modules(ours, width=width) + "\n" + render_hooks(ours, width=width)

    rows = stats.summary_list
    modules = dict(model.named_modules())
    by_id = {id(m): name for name, m in modules.items()}
    seen_text_only = {id(r.module) for r in text_stats.summary_list}
    # Modules with weights of their own that a text-only forward never called.
    missing = sorted(name for name, m in modules.items()
                     if any(True for _ in m.parameters(recurse=False)) and id(m) not in seen_text_only)
    missing_params = sum(p.numel() for name in missing for p in modules[name].parameters(recurse=False))
    hooks = list(ours.of("hook"))
    # Modules a hook ran in place of (SAT calls hooks['layer_forward'](...) instead of
    # layer(...)): torchinfo lists them, with no shapes, because their forward never ran.
    served = {str(e.data.get("layer_path", "")) for e in hooks}
    shown: dict[str, bool] = {}  # path -> does any torchinfo row of this module carry a shape?
    for r in rows:
        path = by_id.get(id(r.module))
        if path is not None:
            shown[path] = shown.get(path, False) or bool(r.input_size or r.output_size)
    no_shapes = sorted(p for p, has in shown.items() if not has and p in served)
    by_mixin = Counter(str(e.data.get("served_by", "?")) for e in hooks)
    attributions = sorted({(w, str(e.data.get("layer_path", ""))) for e in hooks for w in e.data.get("weights") or []
                           if str(w).startswith("mixins.") and "vision" in str(w)})
    mlp = [e for e in hooks if e.data.get("hook") == "mlp_forward" and not e.data.get("model_path")]
    branch = (mlp[0].data.get("branch") or {}) if mlp else {}
    names = set(HOOK_NAMES)
    return Comparison(
        torchinfo_text=str(stats), cogtrace_text=ours_text, torchinfo_rows=len(rows),
        torchinfo_recursive_rows=sum(1 for r in rows if r.is_recursive),
        torchinfo_total_params=int(stats.total_params),
        torchinfo_rows_naming_hooks=sum(1 for r in rows if r.var_name in names or r.class_name in names),
        torchinfo_none_kwarg_error=none_error, layers_without_shapes=no_shapes, text_only_missing=missing,
        text_only_missing_params=missing_params,
        cogtrace_total_params=next((m.total for m in ours.modules if m.path == ""), 0),
        hook_dispatches=len(hooks), hook_dispatches_by_mixin=dict(sorted(by_mixin.items())),
        expert_attributions=attributions, vision_tokens=int(branch.get("vision_tokens", 0) or 0),
        language_tokens=int(branch.get("language_tokens", 0) or 0),
        construction_calls=sum(1 for _ in construction.of("construction")),
        mixin_calls=sum(1 for e in construction.of("construction")
                        if e.data.get("function") in ("add_mixin", "del_mixin")))


def differences(c: Comparison) -> str:
    """The measured differences, one line each."""
    lines = [
        "What torchinfo does not show on this SAT model (measured on the forward above):",
        f"  SAT hook dispatches: cogtrace recorded {c.hook_dispatches} "
        f"({', '.join(f'{k} {v}' for k, v in c.hook_dispatches_by_mixin.items())}); "
        f"torchinfo rows naming a hook: {c.torchinfo_rows_naming_hooks}",
        f"  re-entered rows: {c.torchinfo_recursive_rows} of torchinfo's {c.torchinfo_rows} rows are '(recursive)' "
        "— modules re-entered because a mixin's hook calls weights that live elsewhere in the tree",
        f"  layers run by a hook, not by their own forward (no shapes in torchinfo): {len(c.layers_without_shapes)}"
        + (f" ({', '.join(c.layers_without_shapes[:4])}{', …' if len(c.layers_without_shapes) > 4 else ''})"
           if c.layers_without_shapes else ""),
        f"  vision-expert weights -> the layer they served: cogtrace {len(c.expert_attributions)} pairs "
        f"(e.g. {c.expert_attributions[0][0]} -> {c.expert_attributions[0][1]})" if c.expert_attributions
        else "  vision-expert weights -> layer served: none recorded",
        f"  token routing in mlp_forward of layer 0: {c.vision_tokens} tokens to the vision expert, "
        f"{c.language_tokens} to the language expert (torchinfo shows only the two Linear input shapes)",
        f"  on a text-only forward, {len(c.text_only_missing)} modules holding {c.text_only_missing_params:,} "
        "parameters do not appear in torchinfo at all (vision tower and experts not called)",
        f"  construction calls: cogtrace {c.construction_calls} ({c.mixin_calls} add_mixin/del_mixin); torchinfo 0",
        f"  parameter totals: torchinfo {c.torchinfo_total_params:,}, cogtrace {c.cogtrace_total_params:,} "
        "(= sum of model.parameters())",
    ]
    if c.torchinfo_none_kwarg_error:
        lines.append(f"  passing the forward's own input dict (vision_position_ids=None) to torchinfo raises "
                     f"{c.torchinfo_none_kwarg_error.splitlines()[0]}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..adapters import adapter_for_config
    from ..errors import UserError

    config = adapter_for_config(args.config).load_config(args.config)  # bad configs fail before torch
    if args.depth < 1:
        raise UserError(f"--depth {args.depth}: expected a positive integer")
    count = int(config.values["hidden_size"]) * int(config.values["vocab_size"])
    if count > 50_000_000:
        raise UserError(f"{args.config}: too big to run a forward on a CPU here; expected a tiny config "
                        f"(configs/tiny/...)")
    from ..cogvlm.memory import rough_parameters
    from ..threads import threads_for

    with threads_for(rough_parameters(config)):
        c = measure(args.config, depth=args.depth, width=args.width, seed=args.seed)
    print("=" * 30, "torchinfo.summary", "=" * 30)
    print(c.torchinfo_text)
    print()
    print("=" * 30, "cogtrace (same forward)", "=" * 30)
    print(c.cogtrace_text)
    print(differences(c))
    return 0
