"""Walkthrough 05 — generation: one context forward, then one token per step with a KV cache.

``chat()`` (the article, section 3.5) hands the prepared sequence to SAT's
``filling_sequence`` (``sat/generation/autoregressive_sampling.py``)::

    seq = [prompt ids ..., -1, -1, ..., -1]          # -1 = "to be generated"
    while counter < len(seq) - 1:
        logits, *per_layer = model(input_ids=tokens[:, index:], position_ids=..., mems=mems, ...)
        mems = update_mems([o['mem_kv'] for o in per_layer], mems)   # grow the cache
        tokens, mems = strategy.forward(logits[:, -1], tokens, mems)  # sample one token
        index = counter                                              # next time: only the new token

The first forward sees the whole prompt (image slots included); every later forward sees
one token, because SAT's ``CachedAutoregressiveMixin`` stores each layer's keys and values
(``mem_kv``) and prepends them inside ``attention_fn``. This script adds that mixin as
``cli_demo.py`` does, runs ``filling_sequence`` on the tiny model with a spy on every
forward, and prints each step: what went in, the cache size, what was sampled.

Run:    python walkthroughs/05_generation.py [--lang zh] [--no-pause] [--new-tokens N]
Debug:  VS Code -> "Walkthrough 05: generation"; break in filling_sequence and
        CachedAutoregressiveMixin.attention_fn (sat/model/cached_autoregressive_model.py)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from _common import DEFAULT_CONFIG, Walkthrough, run

from tracer.cogvlm import SAMPLE_IMAGE  # the shipped picture (importing tracer.cogvlm is cheap)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"model config (default: {DEFAULT_CONFIG})")
    parser.add_argument("--image", default=str(SAMPLE_IMAGE), help="image file (default: the shipped sample)")
    parser.add_argument("--query", default="What is the red shape?", help="the question")
    parser.add_argument("--new-tokens", type=int, default=6, metavar="N",
                        help="how many tokens to generate at most (default: 6)")


def shape(value: Any) -> str:
    """``[2, 1, 1238, 128]`` for a tensor, ``None`` for nothing."""
    from tracer.schema import shape_text

    return "None" if value is None else shape_text(value.shape)


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 05 · filling_sequence: context forward, KV cache, sampling",
            "演练 05 · filling_sequence：上下文前向、KV 缓存、采样")
    w.say("Importing torch and SAT (a few seconds)…", "正在导入 torch 和 SAT（需要几秒）……")
    import torch
    from sat.generation.autoregressive_sampling import filling_sequence, update_mems
    from sat.generation.sampling_strategies import BaseStrategy
    from sat.model.mixins import CachedAutoregressiveMixin

    from tracer.cogvlm.chat import SamplingOptions, chat
    from tracer.cogvlm.checkpoint import load_model
    from tracer.cogvlm.image_processor import get_image_processor, open_image
    from tracer.cogvlm.text_processor import TextProcessor
    from tracer.cogvlm.tokenizer import tokenizer_for_config

    model, args = load_model(opts.config)  # walkthrough 03: from_pretrained + load_checkpoint
    # cli_demo.py defaults: temperature 0.8, top_p 0.4, top_k 1, chat_old for cogvlm-chat-v1.1.
    tokenizer = tokenizer_for_config(vars(args), None, "chat_old")
    text_processor = TextProcessor(tokenizer, max_length=2048, image_length=args.image_length)
    image_processor = get_image_processor(args.eva_args["image_size"])

    # ----------------------------------------------------------------------------------------
    # 1. the KV cache is a mixin too
    # ----------------------------------------------------------------------------------------
    w.step("model.add_mixin('auto-regressive', CachedAutoregressiveMixin())",
           "model.add_mixin('auto-regressive', CachedAutoregressiveMixin())")
    before = model.hook_origins.get("attention_fn", w.t("SAT default", "SAT 默认实现"))
    model.add_mixin("auto-regressive", CachedAutoregressiveMixin())
    w.value("hook_origins['attention_fn']", f"{before}  →  {model.hook_origins['attention_fn']}")
    w.say("Its attention_fn is marked @non_conflict: it wraps whatever attention_fn was there (old_impl) "
          "instead of replacing it — hence 'auto-regressive -> default'.",
          "它的 attention_fn 带有 @non_conflict 标记：它包裹原有的 attention_fn（old_impl），而不是替换它"
          "——所以显示为 'auto-regressive -> default'。")
    w.source(CachedAutoregressiveMixin.attention_fn, focus="kw_args['output_this_layer']['mem_kv'] = cache_kv",
             before=4, after=8)

    # ----------------------------------------------------------------------------------------
    # 2. the inputs (walkthrough 04) and the -1 padding
    # ----------------------------------------------------------------------------------------
    w.step("The sequence to fill, and the sampling strategy", "待填充的序列与采样策略")
    prompt = text_processor.history_to_prompt(opts.query)
    inputs = text_processor(prompt)  # input_ids + three masks, each (1, C)
    vision = {f"vision_{k}": v for k, v in image_processor(open_image(opts.image)).items()}  # image (1, 3, H, W)
    input_ids = inputs.pop("input_ids")[0]  # (C,)
    context = len(input_ids)
    seq = torch.cat([input_ids, torch.full((opts.new_tokens,), -1, dtype=input_ids.dtype)])  # (C + N,)
    w.value("seq.shape", f"{tuple(seq.shape)}  = {context} " + w.t("prompt tokens", "个提示 token") + f" + {opts.new_tokens} x -1")
    strategy = BaseStrategy(temperature=0.8, top_p=0.4, top_k=1, end_tokens=[tokenizer.eos_token_id],
                            invalid_slices=text_processor.invalid_slices)
    w.source(BaseStrategy.forward, focus="logits = top_k_logits(logits, self.topk, self.top_p)", before=3, after=3)
    w.note("top_k=1 keeps a single candidate, so sampling is greedy whatever temperature and top_p say: "
           "cli_demo's defaults give deterministic answers.",
           "top_k=1 只保留一个候选，所以无论 temperature 和 top_p 是多少，采样都是贪心的："
           "cli_demo 的默认参数给出确定的回答。")

    # ----------------------------------------------------------------------------------------
    # 3. run filling_sequence with a spy on every forward
    # ----------------------------------------------------------------------------------------
    w.step("filling_sequence, step by step", "filling_sequence，逐步执行")
    w.source(filling_sequence, focus="logits, *output_per_layers = model(", before=1, after=12)
    rows: list[list[str]] = []

    def before_forward(module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        position_ids = kwargs["position_ids"]  # (1, n) for the n tokens fed this step
        rows.append([str(len(rows)), shape(kwargs["input_ids"]),
                     f"{position_ids[0, 0].item()},{position_ids[0, 1].item()},…,{position_ids[0, -1].item()}"
                     if position_ids.shape[1] > 3 else str(position_ids[0].tolist()),
                     shape(kwargs["attention_mask"]), shape(kwargs.get("mems"))])

    def after_forward(module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        logits, *per_layer = output  # logits (1, n, vocab); per_layer: one dict per layer
        rows[-1] += [shape(logits), shape(per_layer[0]["mem_kv"])]

    original_strategy_forward = strategy.forward

    def sampled(logits: torch.Tensor, tokens: torch.Tensor, mems: Any, **kw: Any) -> Any:
        tokens, mems = original_strategy_forward(logits, tokens, mems, **kw)
        token = int(tokens[0, -1])
        rows[-1] += [shape(mems), f"{token} {tokenizer.decode([token])!r}"]
        return tokens, mems

    strategy.forward = sampled  # type: ignore[method-assign]  # instance attribute, this run only
    handles = [model.register_forward_pre_hook(before_forward, with_kwargs=True),
               model.register_forward_hook(after_forward, with_kwargs=True)]
    try:
        with torch.no_grad():
            output, mems = filling_sequence(model, seq, batch_size=1, strategy=strategy,
                                            get_masks_and_position_ids=text_processor.get_func(input_ids, **inputs),
                                            **vision, **inputs)  # output (1, C + n)
    finally:
        for handle in handles:  # always leave the model as we found it
            handle.remove()
        del strategy.forward
    w.table(["step", "input_ids", "position_ids", "attention_mask", "mems in", "logits", "mem_kv[0]",
             "mems out", w.t("sampled", "采样结果")], rows)
    layers, hidden = args.num_layers, args.hidden_size
    w.say(f"  mems = [layers={layers}, batch=1, cached tokens, 2 x hidden={2 * hidden}]: each layer's keys and "
          f"values side by side. Step 0 fed all {context} prompt tokens; every later step feeds one.",
          f"  mems = [层数={layers}, batch=1, 已缓存的 token 数, 2 x hidden={2 * hidden}]：每层的 K 和 V 拼在一起。"
          f"第 0 步输入全部 {context} 个提示 token；之后每一步只输入 1 个。")
    w.source(update_mems, lines=24)
    w.note("A generated token is text: CogVLMModel.forward drops the expert masks for 1-token steps, and its "
           "position id continues after the prompt's last one (the image counted once).",
           "生成的 token 都是文本：CogVLMModel.forward 在单 token 步骤中不再传入专家掩码；它的位置 id 接着提示的"
           "最后一个位置继续计数（图像只算一个位置）。")

    # ----------------------------------------------------------------------------------------
    # 4. decode, and the same through chat()
    # ----------------------------------------------------------------------------------------
    w.step("Decode, and the same turn through chat()", "解码，并用 chat() 再跑一遍")
    generated = output[0, context:].tolist()
    text = tokenizer.decode(output[0].tolist())
    response = text.split(text_processor.sep)[-1].strip()  # chat(): keep what follows ' Answer:'
    w.value(w.t("generated ids", "生成的 id"), generated)
    w.value(w.t("response", "回答"), repr(response))
    result = chat(opts.image, model, text_processor, image_processor, opts.query,
                  options=SamplingOptions(max_length=context + opts.new_tokens, top_k=1))
    w.value("chat(...).response", repr(result.response))
    w.say(f"  same answer: {result.response == response}", f"  回答一致：{result.response == response}")
    w.note("The tiny model's weights are random, so the words are nonsense; the mechanics are the real ones.",
           "tiny 模型的权重是随机的，所以生成的词没有意义；但流程与真实模型完全相同。")

    w.done("Done. Next: 06_grounding.py turns [[x0,y0,x1,y1]] in an answer into boxes on the image.",
           "完成。下一步：06_grounding.py 把回答里的 [[x0,y0,x1,y1]] 画成图片上的框。")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
