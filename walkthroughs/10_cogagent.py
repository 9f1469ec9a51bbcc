"""Walkthrough 10 — CogAgent: two images, two paths.

CogAgent is CogVLM plus a second, high-resolution copy of the same picture. This script answers
the questions CogAgent's users ask upstream, on the tiny ``cogagent-chat`` (real geometry:
224 px and 1120 px, 256 and 6400 tokens) and then at full size on meta:

1. what ``image_size`` 224 and ``cross_image_pix`` 1120 mean (upstream issue #278);
2. where the high-res encoder is built: the ``encoder`` mixin, an EVA2-CLIP-L (#474, #390), and
   SAT's ``is_decoder`` giving every layer a cross-attention;
3. the two image processors of one chat turn;
4. where the cross-attention happens: SAT's built-in ``cross_attention_forward`` (#220), with
   its query and key/value shapes;
5. cached generation: upstream re-runs the high-res encoder at every decode step; reusing SAT's
   cross cache gives the same answer;
6. CogAgent-18B on meta: 11.6B visual, 6.7B language parameters.

Run:    python walkthroughs/10_cogagent.py [--lang zh] [--no-pause]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from _common import Walkthrough, run

TINY = "configs/tiny/cogagent-chat"
FULL = "configs/full/cogagent-chat"
QUERY = "What is on the screen?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=TINY, help=f"a tiny CogAgent config (default: {TINY})")


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 10 · CogAgent: two images, two paths", "演练 10 · CogAgent：两张图像，两条路径")

    # ----------------------------------------------------------------------------------------
    # 1. the two sizes in the config
    # ----------------------------------------------------------------------------------------
    w.step("Two image sizes in one config (upstream #278)", "一个配置里的两种图像尺寸（上游 #278）")
    from tracer.cogagent.config import cross_tokens, load_config

    config = load_config(opts.config)
    v, eva = config.values, config.eva
    low = (eva["image_size"][0] // eva["patch_size"]) ** 2
    w.table([w.t("key", "键"), w.t("value", "值"), w.t("meaning", "含义")], [
        ("eva_args.image_size", eva["image_size"], w.t(f"low-res copy: {low} tokens IN the sequence",
                                                       f"低分辨率副本：{low} 个 token 进入序列")),
        ("image_length", v["image_length"], f"({eva['image_size'][0]}/{eva['patch_size']})^2"),
        ("cross_image_pix", v["cross_image_pix"],
         w.t(f"high-res copy: {cross_tokens(v)} tokens, keys/values only", f"高分辨率副本：{cross_tokens(v)} 个 token，只作键/值")),
        ("cross_attn_hidden_size", v["cross_attn_hidden_size"], w.t("width of the high-res tokens", "高分辨率 token 的宽度")),
        ("is_decoder", v["is_decoder"], w.t("a cross-attention in every layer", "每一层都有交叉注意力")),
    ])
    w.say(f"So 224 and 1120 are not two options: both copies of the picture go in at every forward. The 224 px one "
          f"becomes {low} tokens of the sequence (like CogVLM); the 1120 px one becomes {cross_tokens(v)} tokens that "
          f"the sequence only reads through cross-attention.",
          f"所以 224 和 1120 不是二选一：每次前向两个副本都会输入。224 px 的副本变成序列中的 {low} 个 token"
          f"（与 CogVLM 相同）；1120 px 的副本变成 {cross_tokens(v)} 个 token，序列只通过交叉注意力读取它们。")

    # ----------------------------------------------------------------------------------------
    # 2. construction
    # ----------------------------------------------------------------------------------------
    w.step("Construction: is_decoder and the 'encoder' mixin", "构建：is_decoder 与 'encoder' mixin")
    w.say("Importing torch and SAT (a few seconds)…", "正在导入 torch 和 SAT（需要几秒）……")
    from sat.generation.autoregressive_sampling import filling_sequence
    from sat.model.transformer import BaseTransformerLayer
    from sat.transformer_defaults import cross_attention_forward_default

    import tracer
    from tracer.cogagent.build import build_model
    from tracer.cogagent.chat import chat, pipeline_for_config
    from tracer.cogagent.facts import cross_steps, render_cross_steps
    from tracer.cogagent.model import CogAgentModel
    from tracer.cogvlm import SAMPLE_IMAGE
    from tracer.cogvlm.chat import SamplingOptions

    with tracer.trace() as handle:
        model = build_model(config).model
    w.source(BaseTransformerLayer.__init__, focus="if self.is_decoder:", before=0, after=4)
    layer = model.transformer.layers[0]
    w.value("transformer.layers[0].cross_attention",
            f"query {list(layer.cross_attention.query.weight.shape)}, key_value "
            f"{list(layer.cross_attention.key_value.weight.shape)}, dense {list(layer.cross_attention.dense.weight.shape)}")
    added = next(e for e in handle.trace.of("construction")  # type: ignore[union-attr]
                 if e.name == "BaseModel.add_mixin" and e.data.get("mixin") == "encoder")
    w.value("add_mixin('encoder', ExternalVisionModel)",
            f"+{added.data['params_after'] - added.data['params_before']:,} " + w.t("parameters", "参数"))
    w.source(CogAgentModel.__init__, focus='self.add_mixin("encoder"', before=1, after=0)
    enc = model.get_mixin("encoder")
    w.say(f"The encoder is EVA2-CLIP-L (upstream: eva_clip_L_hf.py, 1024 wide, 24 blocks; here "
          f"{enc.vit.model.cls_token.shape[-1]} wide, {len(enc.vit.model.blocks)} blocks). Its last block is never "
          f"run: upstream's loop skips it.",
          f"这个编码器是 EVA2-CLIP-L（上游 eva_clip_L_hf.py：宽 1024、24 个 block；这里宽 "
          f"{enc.vit.model.cls_token.shape[-1]}、{len(enc.vit.model.blocks)} 个 block）。最后一个 block 从不运行：上游的循环跳过了它。")

    # ----------------------------------------------------------------------------------------
    # 3. two processors
    # ----------------------------------------------------------------------------------------
    w.step("One picture, two image processors", "一张图片，两个图像处理器")
    pipeline = pipeline_for_config(config, max_length=280)
    from PIL import Image

    picture = Image.open(SAMPLE_IMAGE).convert("RGB")
    w.value("image_processor(picture)['image']", tuple(pipeline.image_processor(picture)["image"].shape))
    w.value("cross_image_processor(picture)['image']", tuple(pipeline.cross_image_processor(picture)["image"].shape))
    w.say("chat() passes them as vision_image and cross_image (upstream utils/utils/chat.py).",
          "chat() 把它们作为 vision_image 和 cross_image 传入（上游 utils/utils/chat.py）。")

    # ----------------------------------------------------------------------------------------
    # 4. where the cross-attention is
    # ----------------------------------------------------------------------------------------
    w.step("Where the cross-attention happens (upstream #220)", "交叉注意力在哪里发生（上游 #220）")
    w.value("'cross_attention_forward' in model.transformer.hooks", "cross_attention_forward" in model.transformer.hooks)
    w.say("No mixin serves it: it is SAT's built-in implementation. The high-res tokens arrive as encoder_outputs:",
          "没有任何 mixin 提供它：这是 SAT 的内置实现。高分辨率 token 以 encoder_outputs 的形式传入：")
    w.source(cross_attention_forward_default, focus="mixed_x_layer = self.key_value(encoder_outputs)", before=2, after=3)
    options = SamplingOptions(max_length=280, seed=0)
    with tracer.trace() as upstream_way:
        answer = chat(SAMPLE_IMAGE, model, pipeline, QUERY, options=options)
    first = cross_steps(upstream_way.trace)[0]  # type: ignore[arg-type]
    w.value(w.t("query (B, heads, S, d)", "查询 (B, heads, S, d)"), first.cross[0].query)
    w.value(w.t("cross keys/values (B, heads, N, d)", "交叉键/值 (B, heads, N, d)"), first.cross[0].keys)

    # ----------------------------------------------------------------------------------------
    # 5. generation
    # ----------------------------------------------------------------------------------------
    w.step("Cached generation: the high-res encoder at every step", "带缓存的生成：每一步都运行高分辨率编码器")
    w.source(filling_sequence, focus="kw_args['encoder_outputs'] = mems_cross", before=1, after=0)
    w.say("SAT hands the cached cross keys/values back as encoder_outputs. Upstream's forward looks for "
          "'mems_cross' instead, runs the encoder again and overwrites them:",
          "SAT 把缓存的交叉键/值作为 encoder_outputs 传回。上游的 forward 却查找 'mems_cross'，"
          "于是再次运行编码器并覆盖它们：")
    w.print(render_cross_steps(upstream_way.trace))  # type: ignore[arg-type]
    with tracer.trace() as cached_way:
        reused = chat(SAMPLE_IMAGE, model, pipeline, QUERY, options=options, reuse_cross_cache=True)
    w.print(render_cross_steps(cached_way.trace))  # type: ignore[arg-type]
    w.value(w.t("same answer", "回答一致"), reused.output_ids == answer.output_ids)
    w.note("reuse_cross_cache=True is our option (default False = upstream): the logits are bit-identical, only "
           "the encoder's work per step is saved.",
           "reuse_cross_cache=True 是本工具的选项（默认 False = 上游行为）：logits 逐位相同，只省去每一步编码器的计算。")

    # ----------------------------------------------------------------------------------------
    # 6. full size
    # ----------------------------------------------------------------------------------------
    w.step("CogAgent-18B on meta", "在 meta 上构建 CogAgent-18B")
    full = build_model(FULL, device="meta").model
    params = dict(full.named_parameters())
    visual = sum(p.numel() for n, p in params.items() if n.startswith(("mixins.eva.", "mixins.encoder."))
                 or ".vision_" in n or "cross_attention" in n)
    total = sum(p.numel() for p in params.values())
    w.table([w.t("part", "部分"), w.t("parameters", "参数")], [
        (w.t("total", "合计"), f"{total:,}"),
        (w.t("visual (towers, encoder, experts, cross-attention)", "视觉（视觉塔、编码器、专家、交叉注意力）"), f"{visual:,}"),
        (w.t("language", "语言"), f"{total - visual:,}"),
    ], justify=["left", "right"])
    w.done("Done: two images, two paths — one into the sequence, one into every layer's cross-attention.",
           "完成：两张图像，两条路径——一条进入序列，一条进入每一层的交叉注意力。")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
