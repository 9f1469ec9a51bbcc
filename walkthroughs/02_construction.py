"""Walkthrough 02 — how get_model builds CogVLM out of mixins (the article, sections 2.2–2.5).

``get_model(args, CogVLMModel)`` in ``sat/model/base_model.py`` picks a dtype, calls
``CogVLMModel(args, params_dtype=...)`` and moves the result to ``args.device``. All the
interesting work is in the ``__init__`` chain::

    CogVLMModel.__init__
      LLaMAModel.__init__
        BaseModel.__init__                  -> BaseTransformer: embeddings + N plain layers
        add_mixin('rotary' | 'lm' | 'mlp')  -> LLaMA's rotary attention, lm_head, gated FFN
      add_mixin('eva', ImageMixin)          -> builds a whole EVA2CLIPModel (itself a BaseModel)
      del_mixin('mlp');    add_mixin('mlp', vision-expert FFN)
      del_mixin('rotary'); add_mixin('rotary', vision-expert attention)

A *mixin* is an ``nn.Module`` that owns extra weights and may define *hook* methods
(``attention_forward``, ``mlp_forward``, ...). Every ``add_mixin``/``del_mixin`` re-runs
``collect_hooks_``, which rebuilds ``model.hooks`` and ``model.hook_origins`` (hook -> the
mixin that serves it). The transformer layers ask ``if 'mlp_forward' in self.hooks`` at run
time, so whoever holds the hook at the end decides what the layer computes.

This script watches the chain happen: it temporarily wraps the ``__init__`` of every model
and mixin class, and ``BaseModel.add_mixin`` / ``del_mixin``, to print each call with the
parameter count and the hook table before and after. (``cogtrace build CONFIG`` records the
same calls with the toolkit's tracer — step 6 shows its record; steps 1-5 spy by hand so you can see how.)

Run:    python walkthroughs/02_construction.py [--lang zh] [--no-pause] [--config DIR]
Debug:  VS Code -> "Walkthrough 02: construction"; break in sat/model/base_model.py add_mixin
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from _common import DEFAULT_CONFIG, Walkthrough, run, short_location


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"config folder or model_config.json (default: {DEFAULT_CONFIG})")
    parser.add_argument("--print-lines", type=int, default=40, metavar="N",
                        help="how many lines of print(model) to show (default: 40)")


def count_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def hook_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """``["mlp_forward: — → mlp", "attention_forward: rotary → —"]`` for the hooks that moved
    ('—': not in hook_origins, i.e. SAT's default runs)."""
    changes = []
    for hook in sorted(set(before) | set(after)):
        old, new = before.get(hook), after.get(hook)
        if old != new:
            changes.append(f"{hook}: {old or '—'} → {new or '—'}")
    return changes


# --------------------------------------------------------------------------------------------
# The spy: wrap functions on their classes, print each call, restore the originals on exit
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def watch_construction(w: Walkthrough, classes: Sequence[type], base_model: type) -> Iterator[list[str]]:
    """Narrate every ``__init__`` of ``classes`` and every ``add_mixin``/``del_mixin``.

    We patch the *class* attribute, so calls made as ``self.add_mixin(...)`` inside SAT are
    caught too; the originals are put back in ``finally``, even if construction fails.
    Yields the list of mixin events (``"add eva"``, ``"del mlp"``, ...) in call order.
    """
    depth = 0
    events: list[str] = []
    saved: list[tuple[type, str, Callable[..., Any]]] = []

    def log(text: str) -> None:
        w.print("  " + "│ " * depth + text)

    def wrap_init(cls: type, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            nonlocal depth
            log(f"{cls.__name__}.__init__   [{short_location(original)}]")
            depth += 1
            try:
                original(self, *args, **kwargs)
            finally:
                depth -= 1
        return __init__

    original_add = base_model.add_mixin  # type: ignore[attr-defined]
    original_del = base_model.del_mixin  # type: ignore[attr-defined]

    def add_mixin(self: Any, name: str, new_mixin: Any, reinit: bool = False) -> None:
        hooks_before, params_before = dict(self.hook_origins), count_parameters(self)
        original_add(self, name, new_mixin, reinit=reinit)
        added = count_parameters(self) - params_before
        events.append(f"{type(self).__name__}: add {name}")
        log(f"{type(self).__name__}.add_mixin({name!r}, {type(new_mixin).__name__})   params +{added:,}")
        for change in hook_changes(hooks_before, dict(self.hook_origins)):
            log(f"    hook {change}")

    def del_mixin(self: Any, name: str) -> None:
        hooks_before, params_before = dict(self.hook_origins), count_parameters(self)
        original_del(self, name)
        removed = params_before - count_parameters(self)
        events.append(f"{type(self).__name__}: del {name}")
        log(f"{type(self).__name__}.del_mixin({name!r})   params -{removed:,}")
        for change in hook_changes(hooks_before, dict(self.hook_origins)):
            log(f"    hook {change}")

    try:
        for cls in classes:
            if "__init__" in vars(cls):  # only classes that define their own __init__
                saved.append((cls, "__init__", vars(cls)["__init__"]))
                cls.__init__ = wrap_init(cls, vars(cls)["__init__"])  # type: ignore[misc]
        saved += [(base_model, "add_mixin", original_add), (base_model, "del_mixin", original_del)]
        base_model.add_mixin = add_mixin  # type: ignore[attr-defined]
        base_model.del_mixin = del_mixin  # type: ignore[attr-defined]
        yield events
    finally:
        for cls, attr, original in reversed(saved):
            setattr(cls, attr, original)


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 02 · get_model → __init__ chain → add_mixin / del_mixin → hooks",
            "演练 02 · get_model → __init__ 调用链 → add_mixin / del_mixin → 钩子表")
    # Check the config before the slow SAT import: a wrong path is one clear line, at once.
    from tracer.cogvlm.config import load_config

    config = load_config(opts.config)
    w.say("Importing SAT (a few seconds)…", "正在导入 SAT（需要几秒）……")
    import torch
    from sat.model.base_model import BaseMixin, BaseModel, get_model
    from sat.model.official.eva_clip_model import EVA2CLIPModel, IdentityMixin, NewLayerForward
    from sat.model.official.llama_model import LLaMAMlpMixin, LLaMAModel, LMMixin, RotaryMixin
    from sat.model.official.vit_model import ImagePatchEmbeddingMixin, InterpolatedPositionEmbeddingMixin
    from sat.model.transformer import MLP, BaseTransformer
    from sat.transformer_defaults import HOOKS_DEFAULT

    from tracer.cogvlm import mixins as cogvlm_mixins
    from tracer.cogvlm.build import inference_args
    from tracer.cogvlm.model import CogVLMModel
    from tracer.cogvlm.summary import parameter_table

    args = inference_args(config, device="cpu")  # walkthrough 01, in one call
    w.value("config", config.path)

    # ----------------------------------------------------------------------------------------
    # 1. get_model: dtype, construct, count, move
    # ----------------------------------------------------------------------------------------
    w.step("get_model(args, CogVLMModel)", "get_model(args, CogVLMModel)")
    w.say("get_model chooses params_dtype from args.fp16 / args.bf16 (both False here -> float32), "
          "then calls the class. Everything else happens inside that one call.",
          "get_model 根据 args.fp16 / args.bf16 选择 params_dtype（这里都为 False -> float32），"
          "然后调用模型类。其余所有事情都发生在这一次调用里。")
    w.source(get_model, focus="if check_if_zero3(args):", before=10, after=5)

    # ----------------------------------------------------------------------------------------
    # 2. the __init__ chain: CogVLMModel -> LLaMAModel -> BaseModel
    # ----------------------------------------------------------------------------------------
    w.step("The __init__ chain (method resolution order)", "__init__ 调用链（方法解析顺序 MRO）")
    w.print("  MRO: " + " -> ".join(cls.__name__ for cls in CogVLMModel.__mro__[:4]))
    w.source(BaseModel.__init__, focus="self.transformer = BaseTransformer(", before=4, after=5)
    w.note("BaseModel builds the plain transformer (embeddings, N identical layers, final norm) and "
           "calls collect_hooks_() once, with no mixins yet: every hook is SAT's default.",
           "BaseModel 构建普通的 transformer（词嵌入、N 个相同的层、最后的归一化），并在还没有任何 "
           "mixin 时调用一次 collect_hooks_()：此时所有钩子都是 SAT 的默认实现。")
    w.source(LLaMAModel.__init__, lines=11)
    w.source(CogVLMModel.__init__, focus='self.add_mixin("eva"', before=3, after=7)

    # ----------------------------------------------------------------------------------------
    # 3. watch it happen
    # ----------------------------------------------------------------------------------------
    w.step("Run get_model and watch every __init__, add_mixin and del_mixin",
           "运行 get_model，观察每一次 __init__、add_mixin 和 del_mixin")
    w.source(BaseModel.add_mixin, lines=10)
    watched = [CogVLMModel, LLaMAModel, EVA2CLIPModel, BaseModel, BaseTransformer,
               RotaryMixin, LMMixin, LLaMAMlpMixin, ImagePatchEmbeddingMixin, InterpolatedPositionEmbeddingMixin,
               IdentityMixin, NewLayerForward, cogvlm_mixins.ImageMixin, cogvlm_mixins.LlamaVisionExpertFCMixin,
               cogvlm_mixins.LlamaVisionExpertAttnMixin]
    assert all(issubclass(c, (BaseModel, BaseMixin, BaseTransformer)) for c in watched)
    torch.manual_seed(args.seed)
    with watch_construction(w, watched, BaseModel) as events:
        model = get_model(args, CogVLMModel)
    model.eval()
    mine = [e.split(": ", 1)[1] for e in events if e.startswith("CogVLMModel")]
    w.say(f"CogVLMModel's own mixin calls, in order: {', '.join(mine)}",
          f"CogVLMModel 自身的 mixin 调用顺序：{', '.join(mine)}")
    w.note("EVA2CLIPModel is built *inside* ImageMixin.__init__, before add_mixin('eva') registers it: "
           "a complete second SAT model (its own transformer, mixins and hooks) nested in a mixin.",
           "EVA2CLIPModel 是在 ImageMixin.__init__ *内部*构建的，早于 add_mixin('eva') 的注册："
           "一个完整的 SAT 模型（有自己的 transformer、mixin 和钩子）嵌套在一个 mixin 里。")

    # ----------------------------------------------------------------------------------------
    # 4. the hook table: which mixin serves each of SAT's extension points
    # ----------------------------------------------------------------------------------------
    w.step("The final hook table (model.hook_origins)", "最终的钩子表（model.hook_origins）")
    rows = [(hook, model.hook_origins.get(hook, w.t("SAT default", "SAT 默认实现")),
             model.mixins.eva.vit_model.hook_origins.get(hook, "—")) for hook in HOOKS_DEFAULT]
    w.table(["hook", "CogVLMModel", "vit_model (EVA2CLIP)"], rows)
    w.say("At run time each layer asks whether a hook is installed; this is the dispatch for the FFN:",
          "运行时每一层都会检查某个钩子是否被安装；下面是 FFN 的分发代码：")
    w.source(MLP.forward, focus="if 'mlp_forward' in self.hooks", before=1, after=3)
    w.source(BaseModel.collect_hooks_, focus="hook_origins[name] = mixin_name\n", before=6, after=0)
    w.note("'model' means the model class defines the hook itself: LLaMAModel's position_embedding_forward "
           "returns None, because rotary attention replaces absolute position embeddings.",
           "“model” 表示模型类自己定义了这个钩子：LLaMAModel 的 position_embedding_forward 返回 None，"
           "因为旋转位置编码（rotary）取代了绝对位置嵌入。")

    # ----------------------------------------------------------------------------------------
    # 5. print(model) against a module tree with parameter counts
    # ----------------------------------------------------------------------------------------
    w.step("print(model) against a module tree", "print(model) 与模块树对比")
    printed = str(model).splitlines()
    w.say(f"print(model) is {len(printed)} lines for this tiny model; the first {opts.print_lines}:",
          f"这个小模型的 print(model) 有 {len(printed)} 行；前 {opts.print_lines} 行：")
    for line in printed[: opts.print_lines]:
        w.print("    " + line)
    w.say("  …", "  ……")
    w.say("It shows registration order and layer types, but no parameter counts, no shapes, and not "
          "which hook each mixin serves. Where the parameters actually live:",
          "它展示了注册顺序和层的类型，但没有参数量、没有形状，也看不出每个 mixin 服务于哪个钩子。"
          "参数实际所在的位置：")
    total = count_parameters(model)
    w.table([w.t("module", "模块"), w.t("parameters", "参数量"), "%"],
            [(path, f"{n:,}", f"{100 * n / total:.1f}") for path, n in parameter_table(model)],
            justify=["left", "right", "right"])
    w.say(f"  total: {total:,} parameters", f"  合计：{total:,} 个参数")
    w.note("The language weights of the FFN stay in transformer.layers.N.mlp; the mixin 'mlp' adds "
           "gate_proj and the vision-expert copies. Same for attention and 'rotary'.",
           "FFN 的语言部分权重仍在 transformer.layers.N.mlp 中；mixin 'mlp' 只增加 gate_proj 和视觉专家的"
           "副本。注意力与 'rotary' 同理。")

    # ----------------------------------------------------------------------------------------
    # 6. the same, recorded by the toolkit's tracer (what `cogtrace build CONFIG -o DIR` saves)
    # ----------------------------------------------------------------------------------------
    w.step("The same construction, recorded by cogtrace's tracer",
           "同样的构建过程，由 cogtrace 的追踪器记录")
    import tracer
    from tracer.render.calls import render_calls

    # The hand-made spy above patched six functions; the tracer patches every SAT construction
    # function and BaseMixin/BaseModel subclass, records arguments, parameter and hook deltas,
    # and undoes everything on exit. Nothing is written to disk without an out_dir.
    with tracer.trace(categories=("construction",)) as recording:
        get_model(args, CogVLMModel)
    assert recording.trace is not None
    tree = render_calls(recording.trace, width=110, timings=False).splitlines()
    for line in tree[: opts.print_lines]:
        w.print("  " + line)
    w.say(f"  … {len(tree)} lines in all; `cogtrace build {opts.config} -o out/` writes them as trace.json "
          f"(and trace.chrome.json for Perfetto); `cogtrace render out/trace.json --format tree` prints them.",
          f"  ……共 {len(tree)} 行；`cogtrace build {opts.config} -o out/` 会把它们写成 trace.json（以及供 Perfetto "
          f"使用的 trace.chrome.json）；`cogtrace render out/trace.json --format tree` 可以再次打印。")

    w.done("Done. Next: 03_from_pretrained.py builds the same model through from_pretrained and loads weights.",
           "完成。下一步：03_from_pretrained.py 通过 from_pretrained 构建同一个模型并加载权重。")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
