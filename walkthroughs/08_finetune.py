"""Walkthrough 08 — fine-tuning: upstream's finetune demo, on a CPU, step by step.

The article's next part: fine-tune CogVLM and watch what SAT does. This script:

1. writes a small synthetic grounding dataset in CogVLM-SFT-311K's layout (images/ + labels/);
2. adds LoRA the way upstream's ``finetune_cogvlm_demo.py`` does — ``add_mixin('lora',
   LoraMixin(...), reinit=True)`` on the language model and on the EVA tower — and shows which
   Linear layers ``LoraMixin.reinit`` swapped and why the output does not change yet;
3. applies upstream's trainable-parameter rule (``disable_untrainable_params``) and prints the
   table (upstream issue #189: what really trains);
4. takes one training step by hand, with the calls SAT's ``train_step`` makes (forward_step ->
   loss, backward, optimizer step), and shows the gradients: LoRA's A factors get none at first;
5. merges LoRA back (``merge_lora``) and checks the output is unchanged (upstream #142/#302);
6. with ``--deepspeed``, runs the same through SAT's real ``training_main`` + DeepSpeed on the
   CPU (3 iterations, traced) — what ``cogtrace finetune`` does.

Run:    python walkthroughs/08_finetune.py [--lang zh] [--no-pause] [--deepspeed] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import Walkthrough, run, walkthrough_folder

TRAINED_CONFIG = "configs/tiny/cogvlm-grounding-trained"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=TRAINED_CONFIG, help=f"model config (default: {TRAINED_CONFIG})")
    parser.add_argument("--deepspeed", action="store_true",
                        help="also run 3 iterations through SAT's training_main + DeepSpeed (slower: imports "
                             "DeepSpeed and, the first time, compiles its CPU communication op)")
    parser.add_argument("--out", default=None, metavar="DIR", help="folder for the data and the run (default: walkthroughs/08 in the cache folder, replaced by each run)")


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 08 · fine-tuning: LoRA, the trainable rule, train_step, merge_lora",
            "演练 08 · 微调：LoRA、可训练参数规则、train_step、merge_lora")
    w.say("Importing torch and SAT (a few seconds)…", "正在导入 torch 和 SAT（需要几秒）……")
    import torch
    from sat.model.finetune.lora2 import LoraMixin

    from tracer.cogvlm.build import build_model
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.image_processor import get_image_processor
    from tracer.cogvlm.text_processor import TextProcessor
    from tracer.cogvlm.tokenizer import choose_version, tokenizer_for_config
    from tracer.finetune.data import load_split, write_dataset
    from tracer.finetune.model import apply_trainable_rule, trainable_table
    from tracer.finetune.text import TrainingTextProcessor, answer_loss, collate
    from tracer.training import parameter_group

    out = Path(opts.out) if opts.out else walkthrough_folder("08")
    if not opts.out:
        shutil.rmtree(out, ignore_errors=True)  # the cache folder is this walkthrough's own: start clean
    out.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------------------------------
    w.step("A dataset in upstream's layout", "上游格式的数据集")
    data = write_dataset(out / "data", train=8, valid=2, seed=3)
    first = sorted((data / "train" / "labels").iterdir())[0]
    w.value("labels/" + first.name, json.dumps(json.loads(first.read_text())["conversations"][-2:], ensure_ascii=False))
    w.say("Scenes of coloured shapes; the box answer is CogVLM's grounding format, 000-999 of the image size.",
          "彩色几何图形的场景；框的答案使用 CogVLM 的 grounding 格式，按图像尺寸换算为 000-999。")

    # ----------------------------------------------------------------------------------------
    w.step("LoRA: add_mixin('lora', LoraMixin(...), reinit=True)", "LoRA：add_mixin('lora', LoraMixin(...), reinit=True)")
    config = load_config(opts.config)
    built = build_model(config)
    model, args = built.model, built.args
    w.source(LoraMixin.reinit, focus="replace_linear_with_lora(parent_model.transformer.layers[i].attention.dense",
             before=2, after=2)
    before = {name: type(m).__name__ for name, m in model.named_modules()}
    model.add_mixin("lora", LoraMixin(args.num_layers, 4), reinit=True)
    model.get_mixin("eva").vit_model.add_mixin("lora", LoraMixin(args.eva_args["num_layers"], 4), reinit=True)
    swapped = [(name, before.get(name, "?"), type(m).__name__) for name, m in model.named_modules()
               if hasattr(m, "matrix_A") and before.get(name) != type(m).__name__]
    w.table([w.t("module", "模块"), w.t("before", "之前"), w.t("after", "之后")], swapped)
    w.say("reinit: matrix_A gets kaiming_uniform_, matrix_B zeros_, so scaling * B @ A = 0 and the model "
          "computes exactly what it did before the swap.",
          "reinit：matrix_A 用 kaiming_uniform_ 初始化，matrix_B 置零，所以 scaling * B @ A = 0，替换后模型的输出与之前完全相同。")

    # ----------------------------------------------------------------------------------------
    w.step("What really trains: upstream's rule (#189)", "真正训练的参数：上游的规则（#189）")
    trainable = apply_trainable_rule(model, use_lora=True)
    rows = trainable_table(model, use_lora=True)
    by_why: dict[str, int] = {}
    for row in rows:
        by_why[row.why] = by_why.get(row.why, 0) + row.count
    w.table([w.t("why", "原因"), w.t("weights", "参数量")], [(k, f"{v:,}") for k, v in by_why.items()])
    total = sum(p.numel() for p in model.parameters())
    w.value(w.t("trainable / total", "可训练 / 总数"), f"{trainable:,} / {total:,}")
    w.say("Upstream's rule also enables the MLPs of EVA layers 46-54 (none in a 2-layer tower); on the full "
          "model those are 495.6M weights, which is why its log counts hundreds of millions (docs/faq.md).",
          "上游规则还会打开 EVA 第 46-54 层的 MLP（2 层的小模型里没有）；在完整模型上它们有 4.956 亿参数，"
          "这就是日志里出现数亿可训练参数的原因（见 docs/faq.md）。")

    # ----------------------------------------------------------------------------------------
    w.step("One training step, as SAT's train_step does it", "按 SAT 的 train_step 走一步训练")
    version = choose_version(None, config.values, config.name)
    tokenizer = tokenizer_for_config(config.values, None, version)
    text = TrainingTextProcessor(TextProcessor(tokenizer, 256, int(config.values["image_length"])), 256)
    image_processor = get_image_processor(config.eva["image_size"])
    from PIL import Image

    samples = []
    for item in load_split(data / "train")[:4]:
        query, answer = item.turns[-1]
        samples.append({**text(answer, query), "image": Image.open(item.image).convert("RGB")})
    batch = collate(samples, tokenizer.pad_token_id, image_processor)
    labels = batch.pop("labels")
    batch.pop("context_length")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    from sat.training.deepspeed_training import train_step

    w.source(train_step, focus="forward_ret = forward_step(", before=1, after=3)
    loss = answer_loss(model(**batch)[0], labels)  # forward_step: logits -> upstream's loss
    loss.backward()  # backward_step -> model.backward(loss) under DeepSpeed
    norms: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            norms[parameter_group(name)] = norms.get(parameter_group(name), 0.0) + float(p.grad.square().sum())
    w.value(w.t("loss", "损失"), f"{loss.item():.4f}")
    w.table([w.t("group", "参数组"), w.t("gradient norm", "梯度范数")], [(k, f"{v ** 0.5:.3e}") for k, v in norms.items()])
    w.say("The A factors get a zero gradient on the first step: their gradient passes through B, which is "
          "still zero. Only B moves at first; A follows from the second step on.",
          "第一步里 A 因子的梯度为零：它的梯度要经过仍为零的 B。一开始只有 B 在变，A 从第二步开始更新。")
    optimizer.step()  # model.step() under DeepSpeed
    optimizer.zero_grad(set_to_none=True)

    # ----------------------------------------------------------------------------------------
    w.step("merge_lora: W += scaling * B @ A (#142, #302)", "merge_lora：W += scaling * B @ A（#142、#302）")
    model.eval()
    with torch.no_grad():
        unmerged = model(**batch)[0]
        model.get_mixin("lora").merge_lora()
        model.get_mixin("eva").vit_model.get_mixin("lora").merge_lora()
        merged = model(**batch)[0]
    w.value(w.t("max |merged - LoRA| logits", "合并前后 logits 最大差"), f"{(merged - unmerged).abs().max().item():.2e}")
    w.value(w.t("LoRA parameters left", "剩余 LoRA 参数"), sum(1 for n, _ in model.named_parameters() if ".matrix_" in n))
    w.say("After the merge the parameter names are upstream's again, so the model saves and loads as a plain "
          "CogVLM. Merging model-parallel shards (utils/merge_model.py) is a different step: it joins files.",
          "合并之后参数名恢复为上游的名字，模型可以当作普通 CogVLM 保存和加载。合并模型并行分片"
          "（utils/merge_model.py）是另一回事：它只是把多个文件合成一个。")

    # ----------------------------------------------------------------------------------------
    if opts.deepspeed:
        w.step("The real thing: training_main + DeepSpeed (3 iterations, traced)",
               "真实流程：training_main + DeepSpeed（3 次迭代，带追踪）")
        from tracer.cli import main as cogtrace

        code = cogtrace(["finetune", opts.config, "--data", str(data), "-o", str(out / "run"), "--iters", "3",
                         "--lora-rank", "4"])
        w.value("training.txt", out / "run" / "training.txt")
        if code != 0:
            return code
    else:
        w.note("With --deepspeed this walkthrough also runs SAT's training_main + DeepSpeed; the same as: "
               f"cogtrace finetune {opts.config} --data {data} --iters 3 --lora-rank 4 -o {out / 'run'}",
               "加上 --deepspeed 会再跑一遍 SAT 的 training_main + DeepSpeed；等价于："
               f"cogtrace finetune {opts.config} --data {data} --iters 3 --lora-rank 4 -o {out / 'run'}")
    w.done("Done. In VS Code, the 'Fine-tuning' configurations stop inside training_main, train_step and "
           "LoraMixin.reinit (docs/breakpoints.md).",
           "完成。在 VS Code 中，'Fine-tuning' 调试配置会停在 training_main、train_step 和 LoraMixin.reinit 里"
           "（见 docs/breakpoints.md）。")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
