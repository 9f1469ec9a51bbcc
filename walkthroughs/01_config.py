"""Walkthrough 01 — where CogVLM's arguments come from (the article, section 2.1).

Before SAT builds a single weight, the article assembles one ``argparse.Namespace`` in four
moves, and every later step reads only that Namespace:

    args = CogVLMModel.get_args()                     # 1. SAT's defaults + each model's own
    args = update_args_with_file(args, config_json)   # 2. the checkpoint's architecture
    args = overwrite_args_by_dict(args, {})           # 3. the caller's overrides
    args.rank = ...; args.mode = 'inference'; ...     # 4. the environment, set by hand

This script makes those four calls on a config (the tiny grounding model by default) and,
after each, prints which keys the call added or changed — a diff of the Namespace.

Run:    python walkthroughs/01_config.py [--lang zh] [--no-pause] [--config DIR]
Debug:  VS Code -> "Walkthrough 01: config" (breakpoints inside sat/arguments.py)
Next:   02_construction.py builds the model from this Namespace.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from _common import DEFAULT_CONFIG, Walkthrough, namespace_diff, run, short_repr

# The keys the model's constructors read to decide *what* to build. The rest of the Namespace
# says *how* (dtype, device, dropout, checkpointing, distributed set-up).
ARCH_KEYS = ("num_layers", "hidden_size", "num_attention_heads", "inner_hidden_size", "vocab_size",
             "max_sequence_length", "layernorm_order", "use_bias", "image_length",
             "bos_token_id", "eos_token_id", "pad_token_id")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"config folder or model_config.json (default: {DEFAULT_CONFIG})")


def snapshot(args: argparse.Namespace) -> dict[str, Any]:
    """A copy of the Namespace's contents: SAT sometimes mutates and returns the same object."""
    return dict(vars(args))


def show_diff(w: Walkthrough, before: dict[str, Any], after: dict[str, Any], limit: int = 25) -> None:
    rows = namespace_diff(before, after)
    if not rows:
        w.say("  (no key changed)", "  （没有任何键发生变化）")
        return
    w.table([w.t("key", "键"), w.t("before", "之前"), w.t("after", "之后")], rows[:limit])
    if len(rows) > limit:
        w.say(f"  … and {len(rows) - limit} more", f"  ……还有 {len(rows) - limit} 个")


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 01 · the Namespace: get_args → update_args_with_file → overwrite_args_by_dict",
            "演练 01 · 参数 Namespace：get_args → update_args_with_file → overwrite_args_by_dict")

    # Importing SAT takes a few seconds: it pulls in deepspeed and transformers at import time.
    # Check the config before the slow SAT import: a wrong path is one clear line, at once.
    from tracer.cogvlm.config import load_config

    config = load_config(opts.config)
    w.say("Importing SAT (a few seconds: it imports deepspeed and transformers)…",
          "正在导入 SAT（需要几秒：它在导入时会加载 deepspeed 和 transformers）……")
    from sat.arguments import _simple_init, overwrite_args_by_dict, update_args_with_file
    from sat.model.base_model import BaseModel

    from tracer.cogvlm.build import inference_args
    from tracer.cogvlm.model import CogVLMModel

    w.value("config", config.path)

    # ----------------------------------------------------------------------------------------
    # 1. get_args: SAT's defaults, extended by every class in the model's MRO
    # ----------------------------------------------------------------------------------------
    w.step("CogVLMModel.get_args(): SAT's defaults",
           "CogVLMModel.get_args()：SAT 的默认参数")
    w.say("get_args builds an argparse parser (SAT's common model options plus each class's "
          "add_model_specific_args) and parses an empty command line, so every key gets its default.",
          "get_args 构造一个 argparse 解析器（SAT 通用的模型参数，加上各个类的 add_model_specific_args），"
          "然后解析一个空命令行，于是每个键都取默认值。")
    w.source(BaseModel.get_args, focus="parser.parse_args([])", before=3, after=2)
    w.source(CogVLMModel.add_model_specific_args, lines=6)
    args = CogVLMModel.get_args()
    defaults = snapshot(args)
    w.say(f"  -> a Namespace with {len(defaults)} keys. The architecture keys still hold defaults:",
          f"  -> 得到一个含 {len(defaults)} 个键的 Namespace。结构相关的键此时还是默认值：")
    w.table([w.t("key", "键"), w.t("default", "默认值")],
            [(k, short_repr(defaults[k]) if k in defaults else w.t("(absent)", "（不存在）"))
             for k in (*ARCH_KEYS, "eva_args")])
    w.note("CogVLM's own add_model_specific_args adds image_length and eva_args; LLaMA's adds the "
           "bos/eos/pad ids (with LLaMA-1 defaults 0/1/-1 — the file will correct them).",
           "CogVLM 自己的 add_model_specific_args 增加了 image_length 和 eva_args；LLaMA 的增加了 "
           "bos/eos/pad 三个 id（LLaMA-1 的默认值 0/1/-1，稍后会被配置文件改掉）。")

    # ----------------------------------------------------------------------------------------
    # 2. update_args_with_file: the checkpoint's model_config.json wins over every default
    # ----------------------------------------------------------------------------------------
    w.step("update_args_with_file(args, model_config.json)",
           "update_args_with_file(args, model_config.json)")
    w.source(update_args_with_file, lines=17)
    before = snapshot(args)
    args = update_args_with_file(args, path=str(config.path))
    after_file = snapshot(args)
    w.say("What the file changed (a key shown with '—' before is new: SAT keeps keys it has never "
          "heard of, such as model_class and tokenizer_type):",
          "配置文件改变了哪些键（“之前”为“—”的是新增的键：SAT 会保留它不认识的键，例如 model_class 和 "
          "tokenizer_type）：")
    show_diff(w, before, after_file)
    w.note("It builds a *new* Namespace: keys from the file first, then every old key the file did "
           "not name. Keys ending in _path are made relative to the config's folder.",
           "它构造了一个*新的* Namespace：先放文件里的键，再放文件没提到的旧键。以 _path 结尾的键会被"
           "解析为相对于配置文件所在目录的路径。")

    # ----------------------------------------------------------------------------------------
    # 3. overwrite_args_by_dict: the caller's last word (the article passes {})
    # ----------------------------------------------------------------------------------------
    w.step("overwrite_args_by_dict(args, overwrite_args={})",
           "overwrite_args_by_dict(args, overwrite_args={})")
    w.source(overwrite_args_by_dict, focus="for k in overwrite_args", before=6, after=2)
    before = snapshot(args)
    args = overwrite_args_by_dict(args, overwrite_args={})  # the article's call: nothing to override
    show_diff(w, before, snapshot(args))
    # The same call with a real override, on a copy, to see what it is for. cli_demo.py passes
    # {'model_parallel_size': world_size} when it is started on several GPUs.
    example = overwrite_args_by_dict(argparse.Namespace(**vars(args)), overwrite_args={"model_parallel_size": 2})
    w.say("With cli_demo.py's override for 2 GPUs (on a copy), it is a plain setattr per key — the same "
          "mechanism as the article's later `args.num_layers = 2`:",
          "换成 cli_demo.py 在 2 张 GPU 上传入的覆盖参数（在副本上演示），它就是逐个键 setattr —— 与文章后面"
          "手写 `args.num_layers = 2` 是同一种机制：")
    show_diff(w, snapshot(args), snapshot(example))

    # ----------------------------------------------------------------------------------------
    # 4. the environment: one process, inference, no DeepSpeed — set by hand, as in the article
    # ----------------------------------------------------------------------------------------
    w.step("Environment settings, set by hand", "手动设置运行环境参数")
    before = snapshot(args)
    args.deepspeed = None
    args.local_rank = int(os.environ.get("LOCAL_RANK", 0))  # single process: 0
    args.rank = int(os.environ.get("RANK", 0))
    args.world_size = int(os.environ.get("WORLD_SIZE", 1))
    args.model_parallel_size = args.world_size  # one GPU (or CPU) -> no tensor parallelism
    args.mode = "inference"
    # The article sets skip_init=True (weights left as uninitialised memory, to be filled by
    # load_checkpoint). Without a checkpoint that means garbage/NaN, so we keep SAT's seeded init.
    args.skip_init = False
    args.use_gpu_initialization = False  # the article: torch.cuda.is_available()
    args.device = "cpu"  # the article: 'cuda'
    args.fp16 = False
    args.bf16 = False  # both False -> get_model builds in float32 (4 bytes per parameter)
    show_diff(w, before, snapshot(args))
    w.note("The article also sets skip_init=True and device='cuda'. skip_init leaves weights as "
           "uninitialised memory until load_checkpoint fills them: fine with a checkpoint, NaN without.",
           "文章里还设置了 skip_init=True 和 device='cuda'。skip_init 让权重保持未初始化的内存，等 "
           "load_checkpoint 来填：有权重文件时没问题，没有时就会得到 NaN。")

    w.say("SAT reads the same environment variables itself when BaseModel.__init__ sets up "
          "torch.distributed in model-only mode (that is why launch.json sets RANK/WORLD_SIZE/LOCAL_RANK):",
          "BaseModel.__init__ 以 model-only 模式初始化 torch.distributed 时，SAT 自己也会读取这些环境变量"
          "（所以 launch.json 里设置了 RANK/WORLD_SIZE/LOCAL_RANK）：")
    w.source(_simple_init, focus="args.rank = int(os.getenv('RANK', '0'))", before=1, after=3)

    # The toolkit's own builder does exactly these four moves; check that we agree with it.
    ours = vars(inference_args(config, device="cpu"))
    differ = [k for k in ARCH_KEYS if ours.get(k) != getattr(args, k, None)]
    w.say(f"  tracer.cogvlm.build.inference_args() gives the same architecture: {not differ}",
          f"  tracer.cogvlm.build.inference_args() 得到相同的结构参数：{not differ}")

    # ----------------------------------------------------------------------------------------
    # 5. provenance: for each architecture key, which of the four moves set its final value
    # ----------------------------------------------------------------------------------------
    w.step("Where each architecture value came from", "每个结构参数的最终来源")
    rows = []
    for key in (*ARCH_KEYS, "eva_args"):
        final = getattr(args, key, None)
        origin = w.t("default", "默认值")
        if key in config.values:
            origin = "model_config.json"
        if before.get(key) != final:
            origin = w.t("environment", "环境设置")
        rows.append((key, short_repr(final, 40), origin))
    w.table([w.t("key", "键"), w.t("final value", "最终值"), w.t("set by", "来源")], rows)
    w.say("These are the values BaseModel.__init__ hands to the transformer (walkthrough 02):",
          "BaseModel.__init__ 把这些值交给 transformer（见演练 02）：")
    w.source(BaseModel.__init__, focus="num_layers=args.num_layers", before=1, after=4)
    eva = args.eva_args
    w.say(f"The vision tower's settings stay one dict (eva_args): {eva['num_layers']} layers x "
          f"{eva['hidden_size']}, image {eva['image_size']}, patch {eva['patch_size']} -> "
          f"({eva['image_size'][0]}/{eva['patch_size']})^2 = {args.image_length} image tokens.",
          f"视觉塔的参数整体放在一个字典 eva_args 里：{eva['num_layers']} 层 x {eva['hidden_size']}，"
          f"图像 {eva['image_size']}，patch {eva['patch_size']} -> "
          f"({eva['image_size'][0]}/{eva['patch_size']})^2 = {args.image_length} 个图像 token。")

    w.done("Done. Next: 02_construction.py hands this Namespace to get_model.",
           "完成。下一步：02_construction.py 把这个 Namespace 交给 get_model。")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
