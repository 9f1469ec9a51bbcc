"""Walkthrough 03 — from_pretrained: the same build, plus the weights (the article, section 3.2–3.4).

``cli_demo.py`` does not call ``get_model`` itself. It calls a classmethod every SAT model
inherits, which reads the config *inside* and then loads the weights::

    CogVLMModel.from_pretrained(path, args, build_only=...)
      from_pretrained_base(path, args, ...)
        update_args_with_file(args, path/model_config.json)   # walkthrough 01
        overwrite_args_by_dict(args, overwrite_args)
        get_model(args, CogVLMModel)                          # walkthrough 02
        load_checkpoint(model, args, load_path=path)          # skipped when build_only=True

The article's author passed ``build_only=True``: a 2-layer model with no weights, because
the 17.6B checkpoint did not fit his GPU. This script runs both: ``build_only=True``, then a
real load of a tiny checkpoint in SAT's own layout (``latest`` + ``1/mp_rank_00_model_states.pt``),
generated from a seed and cached on first use by ``tracer.cogvlm.checkpoint``.

Run:    python walkthroughs/03_from_pretrained.py [--lang zh] [--no-pause] [--config DIR]
Debug:  VS Code -> "Walkthrough 03: from_pretrained"; break in sat/training/model_io.py load_checkpoint
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from _common import DEFAULT_CONFIG, Walkthrough, run, watch_calls

# One weight to follow through both loads: the first language layer's fused QKV projection.
PROBE = "transformer.layers.0.attention.query_key_value.weight"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"config folder, or a real checkpoint folder (default: {DEFAULT_CONFIG})")


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 03 · from_pretrained → from_pretrained_base → get_model → load_checkpoint",
            "演练 03 · from_pretrained → from_pretrained_base → get_model → load_checkpoint")
    # Check the config before the slow SAT import: a wrong path is one clear line, at once.
    from tracer.cogvlm.config import load_config

    config = load_config(opts.config)
    w.say("Importing SAT (a few seconds)…", "正在导入 SAT（需要几秒）……")
    import sat.model.base_model as base_model_module
    import torch
    from sat.model.base_model import BaseModel
    from sat.training.model_io import load_checkpoint

    from tracer.cogvlm import checkpoint

    w.value("config", config.path)

    # Where from_pretrained_base looks its helpers up: the globals of sat.model.base_model.
    # (It imported them with `from sat.arguments import update_args_with_file, ...`.)
    sat_chain = [(BaseModel, "from_pretrained"), (BaseModel, "from_pretrained_base"),
                 (base_model_module, "update_args_with_file"), (base_model_module, "overwrite_args_by_dict"),
                 (base_model_module, "get_model"), (base_model_module, "load_checkpoint")]

    # ----------------------------------------------------------------------------------------
    # 1. the two classmethods
    # ----------------------------------------------------------------------------------------
    w.step("from_pretrained and from_pretrained_base", "from_pretrained 与 from_pretrained_base")
    w.say("With one process (no model-parallel resize), from_pretrained goes straight to "
          "from_pretrained_base; the long else-branch only re-splits weights across GPUs.",
          "单进程时（不改变模型并行大小），from_pretrained 直接转给 from_pretrained_base；"
          "后面很长的 else 分支只用于在多张 GPU 之间重新切分权重。")
    w.source(BaseModel.from_pretrained, focus="if build_only or 'model_parallel_size' not in overwrite_args",
             before=1, after=1)
    w.source(BaseModel.from_pretrained_base, focus="args = update_args_with_file(", before=6, after=6)
    w.note("The Namespace passed in holds only SAT defaults and run-time settings: the architecture "
           "is read from <path>/model_config.json here, inside from_pretrained_base.",
           "传入的 Namespace 只有 SAT 默认值和运行时设置：模型结构是在 from_pretrained_base 内部从 "
           "<path>/model_config.json 读入的。")

    # ----------------------------------------------------------------------------------------
    # 2. build_only=True: the article's choice
    # ----------------------------------------------------------------------------------------
    w.step("build_only=True (the article): build, skip load_checkpoint",
           "build_only=True（文章的做法）：只构建，跳过 load_checkpoint")
    start = time.perf_counter()
    with watch_calls(w, sat_chain, show_kwargs=("build_only",)) as calls:
        # A different seed from the checkpoint's, so the two models below can be told apart.
        built, built_args = checkpoint.load_model(config.directory, build_only=True, seed=7)
    built_seconds = time.perf_counter() - start
    w.say(f"  load_checkpoint called: {'load_checkpoint' in calls}   ({built_seconds:.2f} s)",
          f"  是否调用了 load_checkpoint：{'load_checkpoint' in calls}   （{built_seconds:.2f} 秒）")
    w.note("Without a checkpoint the weights are whatever initialisation left. The article also set "
           "skip_init=True, i.e. uninitialised memory; we initialise from a seed instead (here 7).",
           "没有加载权重时，参数就是初始化留下的值。文章还设置了 skip_init=True，即未初始化的内存；"
           "这里改为用随机种子初始化（此处为 7）。")

    # ----------------------------------------------------------------------------------------
    # 3. the checkpoint on disk: SAT's layout
    # ----------------------------------------------------------------------------------------
    w.step("A checkpoint in SAT's layout", "SAT 格式的权重目录")
    if (config.directory / "latest").exists():
        directory = config.directory  # a real checkpoint folder was given
    else:
        directory = checkpoint.generated_checkpoint(config)  # tiny: made from the seed once, cached
    w.value(w.t("directory", "目录"), directory)
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        w.print(f"    {str(path.relative_to(directory)):<36} {path.stat().st_size:>12,} bytes")
    w.value("latest", repr((directory / "latest").read_text().strip()))
    weights_file = checkpoint.checkpoint_file(directory)
    state = checkpoint.read_state_dict(weights_file)  # torch.load(weights_only=True): data, never code
    w.say(f"  {weights_file.name} holds {{'module': state_dict}} with {len(state)} tensors, e.g.:",
          f"  {weights_file.name} 中是 {{'module': state_dict}}，共 {len(state)} 个张量，例如：")
    for name in list(state)[:4] + [n for n in state if n.startswith("mixins.rotary.vision")][:2]:
        w.print(f"    {name:<60} {list(state[name].shape)}")

    # ----------------------------------------------------------------------------------------
    # 4. a real load: the same chain, plus load_checkpoint
    # ----------------------------------------------------------------------------------------
    w.step("build_only=False: the same chain, then load_checkpoint",
           "build_only=False：同样的调用链，然后是 load_checkpoint")
    w.source(load_checkpoint, focus="module.load_state_dict(sd['module'], strict=False)", before=3, after=8)
    w.note("strict=False: SAT only prints unexpected keys. tracer.cogvlm.checkpoint.load_model checks "
           "keys and shapes first (against a meta build) so a wrong checkpoint fails with a clear list.",
           "strict=False：SAT 对多余的键只打印一行。tracer.cogvlm.checkpoint.load_model 会先（对照一次 meta "
           "构建）检查键名和形状，所以错误的权重会给出清楚的差异列表。")
    start = time.perf_counter()
    with watch_calls(w, sat_chain, show_kwargs=("build_only",)) as calls:
        loaded, loaded_args = checkpoint.load_model(directory)
    loaded_seconds = time.perf_counter() - start
    w.say(f"  load_checkpoint called: {'load_checkpoint' in calls}   ({loaded_seconds:.2f} s)",
          f"  是否调用了 load_checkpoint：{'load_checkpoint' in calls}   （{loaded_seconds:.2f} 秒）")

    # ----------------------------------------------------------------------------------------
    # 5. did the weights really come from the file?
    # ----------------------------------------------------------------------------------------
    w.step("Compare: build_only against the real load", "对比：build_only 与真实加载")
    in_file = state[PROBE]
    rows = []
    for label, model in (("build_only=True", built), ("build_only=False", loaded)):
        weight = model.state_dict()[PROBE]
        rows.append((label, list(weight.shape), ", ".join(f"{v:+.4f}" for v in weight.flatten()[:3].tolist()),
                     str(torch.equal(weight.cpu(), in_file))))
    w.table([w.t("model", "模型"), w.t("shape", "形状"), w.t("first values", "前几个值"),
             w.t("equal to the file", "与文件一致")], rows)
    same_args = all(getattr(built_args, k) == getattr(loaded_args, k) for k in ("num_layers", "hidden_size"))
    w.say(f"  {PROBE}: same architecture {same_args}; only the values differ.",
          f"  {PROBE}：结构相同 {same_args}；只有数值不同。")
    w.note("The real 17.6B checkpoint at 2 bytes per weight (fp16/bf16) is a ~35 GB mp_rank_00_model_states.pt; "
           "walkthrough 07 counts why that needs more than a 24 GB GPU.",
           "真实的 17.6B 权重文件约 35 GB（fp16，mp_rank_00_model_states.pt）；演练 07 计算了为什么 24 GB "
           "显卡放不下。")

    w.done("Done. Next: 04_inputs.py turns an image and a question into what this model eats.",
           "完成。下一步：04_inputs.py 把图片和问题变成模型的输入。")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
