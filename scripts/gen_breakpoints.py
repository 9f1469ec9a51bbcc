"""Write ``docs/breakpoints.md``: where to stop in SAT, generated from the installed SAT.

A list of breakpoints goes stale the day SAT moves a line. So the page is generated:

1. each function below is imported from the *installed* SAT (or this repo) and located with
   :mod:`inspect` — its ``file:line``, and the line inside it worth stopping at;
2. one tiny run — ``load_model`` (a meta build that checks the keys, then from_pretrained →
   load_checkpoint) and a 4-token ``chat()``
   turn, i.e. walkthroughs 03 and 05 — is recorded with :func:`sys.setprofile`, counting how
   often each function is entered, however it was imported;
3. the table is written to ``docs/breakpoints.md``.

Run ``python scripts/gen_breakpoints.py`` (``make docs`` does) after upgrading SAT; with
``--check`` it only compares and exits 1 when the page is out of date.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "breakpoints.md"


@dataclass(frozen=True)
class Target:
    """A function to stop in: ``module:qualname``, the line to stop at, and why (en / zh)."""

    ref: str
    focus: str | None
    en: str
    zh: str
    nth: int = 0  # which occurrence of ``focus`` (-1: the last)


# (section title en, section title zh, targets) — in the article's order.
SECTIONS: list[tuple[str, str, list[Target]]] = [
    ("Section 2 · building the Namespace", "第二节 · 构建参数 Namespace", [
        Target("sat.model.base_model:BaseModel.get_args", "args = parser.parse_args([])",
               "SAT's defaults plus each class's add_model_specific_args", "SAT 默认参数 + 各类的 add_model_specific_args"),
        Target("sat.arguments:update_args_with_file", "args = argparse.Namespace(**config, **args)",
               "model_config.json replaces the defaults (a new Namespace)", "model_config.json 覆盖默认值（新建 Namespace）"),
        Target("sat.arguments:overwrite_args_by_dict", "setattr(args, k, overwrite_args[k])",
               "caller overrides, one setattr per key", "调用者的覆盖参数，逐键 setattr"),
    ]),
    ("Section 2 · get_model and the mixins", "第二节 · get_model 与 mixin", [
        Target("sat.model.base_model:get_model", "model = model_cls(args, params_dtype=params_dtype, **kwargs)",
               "dtype from fp16/bf16, then the model class is called", "根据 fp16/bf16 选 dtype，然后调用模型类", nth=-1),
        Target("tracer.cogvlm.model:CogVLMModel.__init__", 'self.add_mixin("eva"',
               "CogVLM's own mixins: eva, then mlp and rotary replaced", "CogVLM 自己的 mixin：eva，然后替换 mlp 和 rotary"),
        Target("sat.model.official.llama_model:LLaMAModel.__init__", 'self.add_mixin("rotary"',
               "LLaMA adds rotary, lm and mlp", "LLaMA 添加 rotary、lm、mlp"),
        Target("sat.model.base_model:BaseModel.__init__", "self.transformer = BaseTransformer(",
               "the plain transformer is built here", "普通 transformer 在这里构建"),
        Target("sat.model.base_model:BaseModel.add_mixin", "self.collect_hooks_()",
               "register a mixin, then recollect the hooks", "注册 mixin 并重新收集钩子"),
        Target("sat.model.base_model:BaseModel.del_mixin", "self.collect_hooks_()",
               "remove a mixin (CogVLM removes mlp and rotary)", "删除 mixin（CogVLM 删除 mlp 和 rotary）"),
        Target("sat.model.base_model:BaseModel.collect_hooks_", "hook_origins[name] = mixin_name\n",
               "who serves each hook: model.hook_origins", "每个钩子由谁提供：model.hook_origins"),
        Target("sat.model.official.eva_clip_model:EVA2CLIPModel.__init__", 'self.add_mixin("patch_embedding"',
               "the vision tower, a whole SAT model inside mixin 'eva'", "视觉塔：mixin 'eva' 里的一个完整 SAT 模型"),
    ]),
    ("Section 3 · from_pretrained", "第三节 · from_pretrained", [
        Target("sat.model.base_model:BaseModel.from_pretrained", "return cls.from_pretrained_base(",
               "one process: straight to from_pretrained_base", "单进程：直接进入 from_pretrained_base"),
        Target("sat.model.base_model:BaseModel.from_pretrained_base", "model = get_model(args, cls, **kwargs)",
               "reads model_config.json, builds, loads unless build_only", "读配置、构建，除非 build_only 否则加载权重"),
        Target("sat.training.model_io:load_checkpoint", "module.load_state_dict(sd['module'], strict=False)",
               "the weights arrive (strict=False!)", "权重在这里载入（strict=False！）"),
    ]),
    ("Section 3 · inputs and generation", "第三节 · 输入与生成", [
        Target("tracer.cogvlm.text_processor:TextProcessor.__call__", "image_embed_mask[eoi - L - 1: eoi + 1]",
               "token ids and the three masks", "token id 与三个掩码"),
        Target("tracer.cogvlm.chat:chat", "output = filling_sequence(",
               "one chat turn, as upstream's chat()", "一轮对话，对应上游的 chat()"),
        Target("sat.generation.autoregressive_sampling:filling_sequence", "logits, *output_per_layers = model(",
               "one forward per generated token", "每生成一个 token 做一次前向"),
        Target("sat.generation.autoregressive_sampling:update_mems", "hiddens = torch.stack(hiddens)",
               "the KV cache grows", "KV 缓存在这里增长"),
        Target("sat.generation.sampling_strategies.base_strategy:BaseStrategy.forward",
               "pred = torch.multinomial(probs, num_samples=1)", "top-k / top-p sampling", "top-k / top-p 采样"),
        Target("sat.model.cached_autoregressive_model:CachedAutoregressiveMixin.attention_fn", "if mem is not None",
               "cached keys/values are prepended", "把缓存的 K/V 拼到前面"),
    ]),
    ("Runtime · hook dispatch inside the transformer", "运行时 · transformer 内部的钩子分发", [
        Target("sat.model.base_model:BaseModel.forward", "self.transformer.hooks.update(self.hooks)",
               "the model's hooks are handed to the transformer", "模型的钩子交给 transformer"),
        Target("sat.model.transformer:BaseTransformer.forward", "if 'word_embedding_forward' in self.hooks",
               "embeddings: mixin 'eva' puts the image in", "词嵌入：mixin 'eva' 在这里放入图像"),
        Target("sat.model.transformer:SelfAttention.forward", "if 'attention_forward' in self.hooks",
               "attention: mixin 'rotary' (vision expert)", "注意力：mixin 'rotary'（视觉专家）"),
        Target("sat.model.transformer:MLP.forward", "if 'mlp_forward' in self.hooks",
               "FFN: mixin 'mlp' (vision expert)", "FFN：mixin 'mlp'（视觉专家）"),
        Target("tracer.cogvlm.mixins:ImageMixin.word_embedding_forward", "image_emb = self.vit_model(",
               "EVA runs, GLU projects, boi/eoi framed", "运行 EVA，GLU 投影，加上 boi/eoi"),
        Target("tracer.cogvlm.mixins:LlamaVisionExpertAttnMixin.attention_forward", "q, k = self.rotary_emb(",
               "vision/language expert split, rotary", "视觉/语言专家分流，旋转位置编码"),
        Target("tracer.cogvlm.mixins:LlamaVisionExpertFCMixin.mlp_forward", "vision_mask = expert.bool()",
               "vision/language expert FFN", "视觉/语言专家 FFN"),
        Target("sat.model.official.eva_clip_model:NewLayerForward.layer_forward", None,
               "EVA's post-norm layer", "EVA 的后归一化层"),
        Target("tracer.rotary:_any_device_forward", "q_out = apply_rotary_torch(",
               "rotary: Triton on CUDA, torch on CPU", "旋转编码：CUDA 上用 Triton，CPU 上用 torch"),
    ]),
    ("Fine-tuning · SAT's training path (cogtrace finetune, walkthrough 08)",
     "微调 · SAT 的训练流程（cogtrace finetune，演练 08）", [
        Target("sat.model.finetune.lora2:LoraMixin.reinit",
               "parent_model.transformer.layers[i].attention.dense = replace_linear_with_lora(",
               "LoRA swaps each attention Linear for a LoraLinear (B = 0)", "LoRA 把每个注意力 Linear 换成 LoraLinear（B = 0）"),
        Target("sat.training.deepspeed_training:training_main",
               "model, optimizer = setup_model_untrainable_params_and_optimizer(args, model)",
               "the whole run: loaders, DeepSpeed, train, save", "整个训练：数据、DeepSpeed、训练、保存"),
        Target("sat.training.deepspeed_training:setup_model_untrainable_params_and_optimizer",
               "model.disable_untrainable_params()", "the trainable rule runs, then deepspeed.initialize",
               "先执行可训练参数规则，再 deepspeed.initialize"),
        Target("tracer.finetune.model:FineTuneTrainCogVLMModel.disable_untrainable_params", "apply_trainable_rule(",
               "upstream's rule: EVA MLPs 46-54 + LoRA factors", "上游规则：EVA 第 46-54 层 MLP + LoRA 因子"),
        Target("sat.training.deepspeed_training:train_step", "backward_step(optimizer, model, lm_loss, args, timers)",
               "one iteration: forward_step, backward, model.step()", "一次迭代：forward_step、反向、model.step()"),
        Target("sat.model.finetune.lora2:LoraMixin.merge_lora",
               "self.transformer.layers[i].attention.dense = merge_linear_lora(",
               "W += scaling * B @ A, back to plain Linears", "W += scaling * B @ A，恢复为普通 Linear"),
    ]),
    ("CogAgent · the high-resolution branch (walkthrough 10)", "CogAgent · 高分辨率分支（演练 10）", [
        Target("sat.transformer_defaults:cross_attention_forward_default", "mixed_query_layer = self.query(hidden_states)",
               "every layer's cross-attention: queries from the sequence, keys/values from the 6400 high-res tokens",
               "每层的交叉注意力：查询来自序列，键/值来自 6400 个高分辨率 token"),
    ]),
]


@dataclass(frozen=True)
class Location:
    target: Target
    function: Any
    file: Path
    def_line: int
    stop_line: int
    stop_text: str


def resolve(ref: str) -> Any:
    """``"pkg.module:Class.method"`` -> the plain function (classmethods and wrappers unwrapped)."""
    module_name, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part) if isinstance(obj, type) else getattr(obj, part)
    return inspect.unwrap(getattr(obj, "__func__", obj))


def locate(target: Target) -> Location:
    function = resolve(target.ref)
    lines, start = inspect.getsourcelines(function)
    file = Path(inspect.getsourcefile(function) or "?")
    offset = 0
    if target.focus is not None:
        hits = [i for i, line in enumerate(lines) if target.focus in line]
        if not hits:
            raise LookupError(f"{target.ref}: no line containing {target.focus!r} in {file}:{start} "
                              f"(SAT changed? update scripts/gen_breakpoints.py)")
        offset = hits[target.nth]
    return Location(target, function, file, start, start + offset, lines[offset].strip())


def locations() -> Iterator[tuple[str, str, list[Location]]]:
    for title_en, title_zh, targets in SECTIONS:
        yield title_en, title_zh, [locate(t) for t in targets]


def shown_path(file: Path) -> str:
    """``sat/model/base_model.py`` for installed packages, repo-relative for this repo."""
    file = file.resolve()
    parts = file.parts
    if "site-packages" in parts:
        return str(Path(*parts[parts.index("site-packages") + 1:]))
    try:
        return str(file.relative_to(REPO))
    except ValueError:
        return str(file)


# ---------------------------------------------------------------------------------------------
# Counting calls in one tiny run


def count_calls(codes: set[CodeType]) -> Counter[CodeType]:
    """Run walkthroughs 03 + 05 in miniature under ``sys.setprofile`` and count entries."""
    from tracer.cogvlm import SAMPLE_IMAGE
    from tracer.cogvlm.chat import SamplingOptions, add_autoregressive_mixin, chat
    from tracer.cogvlm.checkpoint import generated_checkpoint, load_model
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.image_processor import get_image_processor
    from tracer.cogvlm.text_processor import TextProcessor
    from tracer.cogvlm.tokenizer import tokenizer_for_config

    config = load_config("configs/tiny/cogvlm-grounding-generalist")
    generated_checkpoint(config)  # outside the count: a cold cache would add a build + save
    counts: Counter[CodeType] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in codes:
            counts[frame.f_code] += 1

    sys.setprofile(profile)
    try:
        model, args = load_model(config.directory)
        add_autoregressive_mixin(model)
        tokenizer = tokenizer_for_config(vars(args), None, "chat_old")
        processor = TextProcessor(tokenizer, max_length=2048, image_length=args.image_length)
        context = processor(processor.history_to_prompt("What is the red shape?"))["input_ids"].shape[1]
        chat(SAMPLE_IMAGE, model, processor, get_image_processor(args.eva_args["image_size"]), "What is the red shape?",
             options=SamplingOptions(max_length=context + 4, top_k=1))
    finally:
        sys.setprofile(None)
    return counts


# ---------------------------------------------------------------------------------------------
# The page


def render(sections: list[tuple[str, str, list[Location]]], counts: Counter[CodeType]) -> str:
    sat = importlib.metadata.version("SwissArmyTransformer")
    torch = importlib.metadata.version("torch")
    out = [
        "# Suggested breakpoints · 推荐断点",
        "",
        f"<!-- Generated by scripts/gen_breakpoints.py for SwissArmyTransformer {sat}; do not edit. -->",
        f"Generated by `scripts/gen_breakpoints.py` from the installed **SwissArmyTransformer {sat}** (torch {torch}); "
        "`make docs` regenerates it, so the line numbers follow your SAT version. "
        "由 `scripts/gen_breakpoints.py` 根据已安装的 SAT 自动生成；`make docs` 会重新生成，行号始终与你安装的版本一致。",
        "",
        "How to use / 用法:",
        "",
        "1. Start a configuration from `.vscode/launch.json` (all have `\"justMyCode\": false`, so the debugger "
        "steps into SAT). 使用 `.vscode/launch.json` 中的配置启动（均设置了 `\"justMyCode\": false`，可以单步进入 SAT）。",
        "2. `Ctrl+P`, type the path below with `:line` — SAT lives under "
        "`.venv/lib/python3.*/site-packages/` — and press `F9`. 按 `Ctrl+P` 输入下表的路径和 `:行号`"
        "（SAT 位于 `.venv/lib/python3.*/site-packages/` 下），按 `F9` 设置断点。",
        "3. *Calls* counts how often the function ran in one tiny run: `load_model` plus a 4-token "
        "`chat()` turn (walkthroughs 03 and 05). `load_model` builds the model twice — once on the meta "
        "device to check the checkpoint's keys and shapes, then `from_pretrained → load_checkpoint` — so "
        "construction functions count 2 where the article's flow alone would count 1; a breakpoint there "
        "stops twice in `cogtrace chat` too. A hot function (hundreds of calls) deserves a conditional "
        "breakpoint, e.g. `kw_args['layer_id'] == 0`. "
        "*Calls* 是一次 tiny 运行（`load_model` + 生成 4 个 token 的 `chat()`）中该函数被调用的次数。"
        "`load_model` 会构建两次模型：先在 meta 设备上构建以检查权重的键和形状，再执行 "
        "`from_pretrained → load_checkpoint`，所以构建相关函数计数为 2（断点在 `cogtrace chat` 中也会停两次）。"
        "调用很多的函数建议用条件断点，例如 `kw_args['layer_id'] == 0`。",
        "",
    ]
    for title_en, title_zh, locs in sections:
        out += [f"## {title_en} · {title_zh}", "",
                "| Function | Defined at | Stop at | Calls | Why · 作用 |",
                "|---|---|---|---:|---|"]
        for loc in locs:
            name = loc.target.ref.split(":")[1]
            code = loc.stop_text.replace("|", "\\|")
            if len(code) > 70:
                code = code[:69] + "…"
            calls = counts.get(loc.function.__code__, 0)
            out.append(f"| `{name}` | `{shown_path(loc.file)}:{loc.def_line}` | line {loc.stop_line}: `{code}` "
                       f"| {calls} | {loc.target.en} · {loc.target.zh} |")
        out.append("")
    out += [
        "Notes · 说明",
        "",
        "- On a CPU the rotary embedding goes through `tracer/rotary.py` (`_any_device_forward`), not "
        "SAT's Triton kernel; on CUDA it calls SAT's `FastRotaryEmbedding.forward`. "
        "CPU 上旋转位置编码走 `tracer/rotary.py`，而不是 SAT 的 Triton 内核。",
        "- `tracer/cogvlm/*` mirrors upstream CogVLM's `models/cogvlm_model.py`, `utils/utils/language.py` and "
        "`utils/utils/chat.py`: the same breakpoints apply to upstream's files. "
        "`tracer/cogvlm/*` 与上游 CogVLM 的对应文件结构一致，断点位置可以对照使用。",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare with docs/breakpoints.md; exit 1 if stale")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    sections = list(locations())
    codes = {loc.function.__code__ for _, _, locs in sections for loc in locs}
    text = render(sections, count_calls(codes))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python scripts/gen_breakpoints.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
