"""Walkthrough 07 — the real thing: CogVLM-17B on the ``meta`` device, and why the article needed 24 GB.

A tensor on PyTorch's ``meta`` device has a shape and a dtype but no storage: building the
full model there costs about a second and almost no memory, yet every parameter name, shape
and count is the real one. This script:

1. builds ``configs/full/cogvlm-grounding-generalist`` on meta through the same SAT
   ``get_model`` call as walkthrough 02 — 17.6 billion parameters;
2. repeats the article's trick, ``args.num_layers = 2`` — still 5.5 billion, because the
   63-layer EVA vision tower is not touched by ``num_layers``;
3. turns parameter counts into bytes: 4 per parameter in float32 (the article set
   ``fp16 = bf16 = False``, so ``get_model`` built float32), 2 in float16/bfloat16;
4. explains why ``with torch.device('meta')`` alone is not enough for SAT (it asks for
   ``device=torch.device('cpu')`` explicitly) and how ``tracer.devices.ForceDevice`` fixes it.

Run:    python walkthroughs/07_full_size_meta.py [--lang zh] [--no-pause]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Sequence

from _common import Walkthrough, run

FULL_CONFIG = "configs/full/cogvlm-grounding-generalist"
GPU_GIB = 24  # the article's card (an RTX 3090/4090 class GPU: 24 GiB)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=FULL_CONFIG, help=f"a full-size config (default: {FULL_CONFIG})")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 07 · full size on meta: 17.6B parameters, the article's 5.5B, and 24 GB",
            "演练 07 · 在 meta 设备上构建完整模型：17.6B 参数、文章的 5.5B 版本，以及 24 GB 显存")
    w.say("Importing torch and SAT (a few seconds)…", "正在导入 torch 和 SAT（需要几秒）……")
    import torch
    from sat.model.base_model import BaseModel, get_model

    from tracer import devices
    from tracer.cogvlm.build import build_model
    from tracer.cogvlm.summary import human_count, parameter_table

    # ----------------------------------------------------------------------------------------
    # 1. the full model on meta
    # ----------------------------------------------------------------------------------------
    w.step("Build the full model on the meta device", "在 meta 设备上构建完整模型")
    start = time.perf_counter()
    full = build_model(opts.config, device="meta")  # get_model(args, CogVLMModel) under ForceDevice('meta')
    seconds = time.perf_counter() - start
    params = full.num_parameters
    weight = full.model.transformer.layers[0].attention.query_key_value.weight
    w.value(w.t("parameters", "参数量"), f"{params:,}  ({human_count(params)})")
    w.value(w.t("build time", "构建耗时"), f"{seconds:.2f} s   "
            + w.t("peak RSS of this whole process", "整个进程的峰值内存") + f": {peak_rss_mib():,.0f} MiB")
    w.value("transformer.layers[0].attention.query_key_value.weight",
            f"shape {list(weight.shape)}, device {weight.device}, is_meta {weight.is_meta}")
    w.say("Every shape is real, nothing is allocated: this is how the toolkit draws the full-size diagrams.",
          "所有形状都是真实的，但没有分配任何内存：本工具的完整尺寸结构图就是这样画出来的。")

    # ----------------------------------------------------------------------------------------
    # 2. the article's variant: args.num_layers = 2
    # ----------------------------------------------------------------------------------------
    w.step("The article's variant: args.num_layers = 2", "文章的版本：args.num_layers = 2")
    article = build_model(opts.config, device="meta", num_layers=2)  # sets args.num_layers = 2, as the article
    article_params = article.num_parameters
    full_rows = dict(parameter_table(full.model))
    article_rows = dict(parameter_table(article.model))
    parts = [("transformer", w.t("language layers + embeddings", "语言层 + 词嵌入")),
             ("mixins.lm", "lm_head"),
             ("mixins.eva.vit_model", w.t("EVA2-CLIP vision tower", "EVA2-CLIP 视觉塔")),
             ("mixins.eva.linear_proj", w.t("GLU adapter", "GLU 适配器")),
             ("mixins.mlp", w.t("FFN gate + vision-expert FFN", "FFN 门控 + 视觉专家 FFN")),
             ("mixins.rotary", w.t("vision-expert attention", "视觉专家注意力"))]
    rows: list[tuple[str, ...]] = [(path, label, human_count(full_rows[path]), human_count(article_rows[path]))
                                   for path, label in parts]
    rows.append(("", w.t("total", "合计"), human_count(params), human_count(article_params)))
    w.table([w.t("module", "模块"), "", f"num_layers={full.args.num_layers}", "num_layers=2"], rows,
            justify=["left", "left", "right", "right"])
    eva = full.args.eva_args
    w.say(f"num_layers only shrinks the language model. The vision tower keeps its {eva['num_layers']} layers x "
          f"{eva['hidden_size']} ({human_count(full_rows['mixins.eva.vit_model'])}), so the 'small' model is still "
          f"{human_count(article_params)}.",
          f"num_layers 只缩小语言模型。视觉塔仍然是 {eva['num_layers']} 层 x {eva['hidden_size']}"
          f"（{human_count(full_rows['mixins.eva.vit_model'])}），所以这个“小”模型仍有 "
          f"{human_count(article_params)} 参数。")

    # ----------------------------------------------------------------------------------------
    # 3. parameters -> bytes
    # ----------------------------------------------------------------------------------------
    w.step("Why a 24 GB GPU: parameters x bytes per parameter", "为什么需要 24 GB 显卡：参数量 x 每个参数的字节数")
    w.source(get_model, focus="params_dtype = torch.float32", before=5, after=0)
    w.say("get_model picked float32 because the article set args.fp16 = args.bf16 = False (walkthrough 02).",
          "get_model 选择了 float32，因为文章设置了 args.fp16 = args.bf16 = False（见演练 02）。")
    rows = []
    for name, count in (("17.6B (num_layers=32)", params), ("article (num_layers=2)", article_params)):
        for dtype in (torch.float32, torch.float16):
            size = torch.empty(0, dtype=dtype).element_size()  # 4 bytes for float32, 2 for float16/bfloat16
            total = count * size
            fits = total / 2**30 < GPU_GIB
            rows.append((name, str(dtype).replace("torch.", ""), f"{count:,} x {size}", f"{total / 1e9:.1f} GB",
                         f"{total / 2**30:.1f} GiB", w.t("yes", "能") if fits else w.t("no", "不能")))
    w.table([w.t("model", "模型"), "dtype", w.t("params x bytes", "参数 x 字节"), "GB (10^9)", "GiB",
             w.t(f"weights fit {GPU_GIB} GiB?", f"权重能放进 {GPU_GIB} GiB？")], rows,
            justify=["left", "left", "right", "right", "right", "left"])
    hidden, layers = full.args.hidden_size, full.args.num_layers
    per_token = 2 * layers * hidden * 4  # K and V, every layer, float32
    prompt_tokens = 1 + full.args.image_length + 2 + 20
    w.say(f"The article's 2-layer model needs {article_params * 4 / 2**30:.1f} GiB for the weights alone in "
          f"float32: it fits a 24 GiB card, with a few GiB left for activations and the KV cache. The full model would need "
          f"{params * 4 / 2**30:.0f} GiB in float32, or {params * 2 / 2**30:.0f} GiB in "
          f"float16 — more than one 24 GiB card either way.",
          f"文章的 2 层模型仅权重在 float32 下就需要 {article_params * 4 / 2**30:.1f} GiB：能放进 24 GiB 显卡，"
          f"只剩几 GiB 给激活值和 KV 缓存。完整模型在 float32 下需要 {params * 4 / 2**30:.0f} GiB，"
          f"float16 下也需要 {params * 2 / 2**30:.0f} GiB——都超过一张 24 GiB 显卡。")
    w.note(f"Generation adds the KV cache: 2 (K, V) x {layers} layers x {hidden} x 4 bytes = "
           f"{per_token / 2**20:.2f} MiB per token in float32; a {prompt_tokens}-token prompt with one image "
           f"caches {prompt_tokens * per_token / 2**30:.2f} GiB.",
           f"生成时还有 KV 缓存：2（K、V）x {layers} 层 x {hidden} x 4 字节 = 每个 token {per_token / 2**20:.2f} MiB"
           f"（float32）；一个带图像的 {prompt_tokens} token 提示要缓存 {prompt_tokens * per_token / 2**30:.2f} GiB。")

    # ----------------------------------------------------------------------------------------
    # 4. how the meta build works
    # ----------------------------------------------------------------------------------------
    w.step("Why `with torch.device('meta')` is not enough", "为什么只用 `with torch.device('meta')` 不够")
    w.say("torch.device('meta') as a context only fills in a device where the caller gave none. SAT's "
          "BaseModel asks for the CPU explicitly:",
          "torch.device('meta') 作为上下文管理器，只在调用者没有指定设备时才生效。而 SAT 的 BaseModel "
          "显式地指定了 CPU：")
    w.source(BaseModel.__init__, focus="device=torch.cuda.current_device() if", before=2, after=1)
    w.say("So the toolkit overrides the device of every tensor factory call inside the block, explicit or not:",
          "所以本工具在代码块内覆盖每一次张量创建调用的 device 参数，无论是否显式指定：")
    w.source(devices.ForceDevice.__torch_function__, lines=6, label="tracer.devices.ForceDevice.__torch_function__")
    w.note("Upstream CogVLM's own mixins also pass device=cpu; built that way the 17.6B 'meta' model took 25 s and "
           "6.5 GB here. With ForceDevice: about a second.",
           "上游 CogVLM 自己的 mixin 也传入了 device=cpu；那样构建 17.6B 的“meta”模型在这里用了 25 秒和 6.5 GB 内存。"
           "使用 ForceDevice：大约一秒。")

    w.done("Done. That is the whole article: config, construction, from_pretrained, inputs, generation, "
           "grounding, and the size of the real model.",
           "完成。这就是整篇文章的内容：配置、构建、from_pretrained、输入、生成、grounding，以及真实模型的规模。")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
