"""Walkthrough 09 — model parallel: CogVLM split across ranks by SAT's own mpu, on a CPU.

When one card is too small, upstream's answer is ``torchrun --nproc_per_node 2 cli_demo_sat.py``:
SAT splits every big weight across the ranks and adds a collective after each split layer.
This script shows how, with the tiny model and two CPU processes:

1. the process group: SAT picks gloo when there is no CUDA;
2. who holds what: SAT's ``partition()`` of a fused QKV, an FFN and the vocabulary;
3. split at load: ``from_pretrained(..., overwrite_args={'model_parallel_size': 2})`` and the
   ``.cuda()`` that stops it on a CPU (and the substitution that lets it run);
4. a real run: 2 ranks under torchrun, traced per rank — logits against one process, the
   collectives each layer adds;
5. memory per rank of the full 17.6B model at mp 1/2/4/8: "will it fit on two 24 GB cards?".

Run:    python walkthroughs/09_model_parallel.py [--lang zh] [--no-pause]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from _common import Walkthrough, run

TINY = "configs/tiny/cogvlm-base-224"  # 256 image tokens: the quickest tiny config
FULL = "configs/full/cogvlm-chat-v1.1"
GPU_GIB = 24


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nproc", type=int, default=2, help="ranks for step 4 (default 2; 4 also works)")


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 09 · model parallel: one model, several processes, SAT's mpu",
            "演练 09 · 模型并行：一个模型，多个进程，SAT 的 mpu")
    w.say("Importing torch and SAT (a few seconds)…", "正在导入 torch 和 SAT（需要几秒）……")
    import torch
    from sat.arguments import _simple_init
    from sat.model.base_model import BaseModel
    from sat.mpu import operation
    from sat.mpu.layers import ColumnParallelLinear

    from tracer.cogvlm.build import build_model
    from tracer.parallel import cpu_split
    from tracer.parallel.memory import memory_table

    # ----------------------------------------------------------------------------------------
    w.step("The process group: gloo without CUDA", "进程组：没有 CUDA 时使用 gloo")
    w.source(_simple_init, focus="distributed_backend=", before=1, after=1)
    w.say("Every SAT model calls this in BaseModel.__init__. Under torchrun, RANK / WORLD_SIZE / MASTER_PORT come "
          "from the environment and model_parallel_size decides how SAT's mpu groups the ranks. On a CPU the "
          "backend is gloo; the same code runs with nccl on GPUs.",
          "每个 SAT 模型都会在 BaseModel.__init__ 里调用它。在 torchrun 下，RANK / WORLD_SIZE / MASTER_PORT 来自环境变量，"
          "model_parallel_size 决定 SAT 的 mpu 如何给进程分组。在 CPU 上后端是 gloo；同样的代码在 GPU 上使用 nccl。")
    w.note("Set OMP_NUM_THREADS=1 per rank on a small machine: N ranks x all cores each only fight for the cores.",
           "在小机器上给每个进程设置 OMP_NUM_THREADS=1：N 个进程各自占满所有核心只会互相争抢。")

    # ----------------------------------------------------------------------------------------
    w.step("Who holds what: SAT's partition()", "谁持有什么：SAT 的 partition()")
    model = build_model(TINY).model  # mp=1, this process
    qkv = model.transformer.layers[0].attention.query_key_value
    w.source(ColumnParallelLinear.partition, focus="strided_weights.append", before=3, after=2)
    rows = []
    for path, module in (("transformer.layers.0.attention.query_key_value", qkv),
                         ("transformer.layers.0.mlp.dense_h_to_4h", model.transformer.layers[0].mlp.dense_h_to_4h),
                         ("transformer.layers.0.mlp.dense_4h_to_h", model.transformer.layers[0].mlp.dense_4h_to_h),
                         ("transformer.word_embeddings", model.transformer.word_embeddings)):
        weights, _ = module.partition(2)
        rows.append((path, type(module).__name__, "x".join(map(str, module.weight.shape)),
                     " | ".join("x".join(map(str, w_.shape)) for w_ in weights)))
    w.table([w.t("weight", "权重"), w.t("class", "类"), w.t("full", "完整"), w.t("rank 0 | rank 1", "rank 0 | rank 1")],
            rows)
    w.say("ColumnParallelLinear splits its output rows, RowParallelLinear its input columns, "
          "VocabParallelEmbedding the vocabulary. The fused QKV has stride 3: each rank gets half of q, half of "
          "k and half of v (rows [0:32)+[64:96)+[128:160) on rank 0), so each rank owns whole attention heads.",
          "ColumnParallelLinear 按输出行切分，RowParallelLinear 按输入列切分，VocabParallelEmbedding 按词表切分。"
          "融合的 QKV 的 stride 为 3：每个 rank 拿到 q、k、v 各一半（rank 0 是第 [0:32)+[64:96)+[128:160) 行），"
          "所以每个 rank 拥有完整的注意力头。")
    w.note("A vocabulary under 1,000 gets a plain nn.Embedding that is not split, yet the logits are still gathered: "
           "at mp=2 they come out twice as wide. cogtrace refuses such a config in one line.",
           "词表小于 1000 时 SAT 使用普通 nn.Embedding，不切分，但 logits 仍然会被收集：mp=2 时宽度翻倍。"
           "cogtrace 会用一行报错拒绝这样的配置。")

    # ----------------------------------------------------------------------------------------
    w.step("Split at load, and the .cuda() in the way", "加载时切分，以及挡路的 .cuda()")
    w.source(BaseModel.from_pretrained, focus="mp_split_model_rank0(model, model_full", before=14, after=3)
    w.source(operation.mp_split_model_rank0, focus=".cuda()", before=3, after=1)
    w.say("Rank 0 loads the whole mp=1 checkpoint, cuts each parallel weight with partition() and sends slice i to "
          "rank i; the other ranks receive (mp_split_model_receive). The sender moves each slice to the GPU first, "
          "so on a CPU it fails. cogtrace swaps in the same sender without .cuda() for the duration of the load:",
          "rank 0 加载完整的 mp=1 检查点，用 partition() 切开每个并行权重，把第 i 片发给 rank i；其他 rank 接收"
          "（mp_split_model_receive）。发送方先把每一片移到 GPU 上，所以在 CPU 上会失败。cogtrace 在加载期间换上"
          "一个不调用 .cuda() 的同样的发送函数：")
    w.source(cpu_split.split_model_rank0_cpu, focus="torch.distributed.send(piece", before=4, after=1)

    # ----------------------------------------------------------------------------------------
    w.step(f"A real run: {opts.nproc} ranks under torchrun, traced", f"真实运行：torchrun 下 {opts.nproc} 个进程，逐 rank 追踪")
    from tracer.cogvlm.checkpoint import load_model
    from tracer.cogvlm.config import load_config
    from tracer.parallel.launch import launch
    from tracer.parallel.merge import load_rank_traces, write_merged
    from tracer.parallel.rank import sample_logits
    from tracer.render.parallel import collective_rows

    config = load_config(TINY)
    single, single_args = load_model(config)  # generates the tiny mp=1 checkpoint once; every rank splits it
    reference = sample_logits(single, single_args)
    with tempfile.TemporaryDirectory(prefix="walkthrough09-") as tmp_name:
        tmp = Path(tmp_name)
        w.say(f"python -m torch.distributed.run --nproc_per_node {opts.nproc} -m tracer.parallel.worker logits "
              f"{TINY} --trace …   (a few seconds per rank)", "")
        launch(["logits", str(config.directory), "--save", str(tmp), "--trace", str(tmp / "trace")], opts.nproc,
               log=tmp / "torchrun.log")
        logits = [torch.load(tmp / f"logits_rank{r}.pt") for r in range(opts.nproc)]
        diff = (logits[0] - reference).abs().max().item()
        w.value(w.t("logits shape on every rank", "每个 rank 上的 logits 形状"), tuple(logits[0].shape))
        w.value(w.t("all ranks identical", "所有 rank 完全一致"), all(torch.equal(logits[0], x) for x in logits))
        w.value(w.t(f"max |mp={opts.nproc} - mp=1|", f"max |mp={opts.nproc} - mp=1|"), f"{diff:.1e}")
        w.say("Not bit-identical: each rank sums half of every dot product and all_reduce adds the halves, a "
              "different order of float32 additions. The difference stays at the level of float32 rounding.",
              "不是逐位一致：每个 rank 只算每个点积的一半，再由 all_reduce 相加，float32 加法的顺序不同。"
              "差别停留在 float32 舍入误差的量级。")
        traces = load_rank_traces(tmp / "trace")
        merged = write_merged(tmp / "trace")
        rows = [(r.layer or w.t("(outside forwards)", "（前向之外）"), r.op, r.count, f"{r.bytes:,}", r.shapes)
                for r in collective_rows(traces[0]) if r.op != "align"]
        w.table([w.t("layer (rank 0)", "层（rank 0）"), "op", w.t("calls", "次数"), w.t("bytes", "字节"),
                 w.t("shape", "形状")], rows)
        w.say("RowParallelLinear (attention.dense, dense_4h_to_h) ends with an all_reduce of the partial sums; "
              "VocabParallelEmbedding too (each rank looked up only its half of the vocabulary); the logits are "
              "gathered (mpu.gather). The sends are the split at load. "
              f"The merged trace has one lane per rank: {merged.name} (open it in ui.perfetto.dev).",
              "RowParallelLinear（attention.dense、dense_4h_to_h）最后对部分和做 all_reduce；VocabParallelEmbedding 也是"
              "（每个 rank 只查自己那一半词表）；logits 则被收集（mpu.gather）。send 是加载时的切分。"
              f"合并后的追踪每个 rank 一条泳道：{merged.name}（在 ui.perfetto.dev 打开）。")

    # ----------------------------------------------------------------------------------------
    w.step("Will it fit on two 24 GB cards?", "两张 24 GB 显卡放得下吗？")
    table = memory_table(FULL)
    rows = []
    for r in table["rows"]:
        bf16 = r["weights_bytes"]["bf16"] / 2**30
        kv = r["image_prompt_kv_bytes"]["bf16"] / 2**30
        rows.append((r["model_parallel_size"], f"{r['parameters_per_rank']:,}", f"{bf16:.1f} GiB", f"{kv:.2f} GiB",
                     w.t("yes", "能") if bf16 + kv < GPU_GIB else w.t("no", "不能")))
    w.table(["mp", w.t("parameters per rank", "每个 rank 的参数"), w.t("bf16 weights", "bf16 权重"),
             w.t("KV cache of the image (bf16)", "图像的 KV 缓存（bf16）"),
             w.t(f"fits {GPU_GIB} GiB (weights + image KV)?", f"放得进 {GPU_GIB} GiB（权重 + 图像 KV）？")], rows,
            justify=["right", "right", "right", "right", "left"])
    w.say(f"{table['name']}: {table['parameters']:,} parameters; {table['replicated']:,} of them (layer norms, EVA's "
          "plain linears, the GLU adapter) are copied to every rank. At mp=2 a rank holds about half in bf16: it "
          "fits a 24 GiB card with a few GiB left for activations — that is upstream's two-card recipe.",
          f"{table['name']}：{table['parameters']:,} 个参数；其中 {table['replicated']:,} 个（层归一化、EVA 的普通线性层、"
          "GLU 适配器）在每个 rank 上都有一份。mp=2 时每个 rank 在 bf16 下大约持有一半：放得进 24 GiB 显卡，"
          "还剩几 GiB 给激活值——这就是上游的两卡方案。")
    w.note("A checkpoint saved at mp=2 loads only on 2 ranks; SAT splits only mp=1 checkpoints at load. Merge first "
           "(upstream utils/merge_model.py; docs/faq.md, #419 and #303).",
           "以 mp=2 保存的检查点只能在 2 个 rank 上加载；SAT 只会在加载时切分 mp=1 的检查点。请先合并"
           "（上游 utils/merge_model.py；见 docs/faq.zh.md 中的 #419 与 #303）。")
    w.done()
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
