"""Walkthrough 04 — from an image and a question to token ids and three masks (the article, section 3.5).

Before ``chat()`` runs the model, three helpers prepare its inputs (upstream names in brackets):

    tokenizer       = load_tokenizer(...)            [llama2_tokenizer(path, signal_type=version)]
    image_processor = get_image_processor(490)       [get_image_processor(image_size)]
    text_processor  = TextProcessor(tokenizer, max_length, image_length)
                                                     [llama2_text_processor_inference(...)]

The text processor turns a prompt into one sequence in which the image is a run of
placeholder slots, plus three masks that tell the model what each position is::

    position:   0      1      2 … L+1       L+2    L+3 …
    token:    [BOS]  [boi]   L image slots  [eoi]  question text …
    image_embed_mask    1      1 … 1          1      0    embeddings come from the vision tower
    vision_expert_mask  1      1 … 1          0      0    FFN/attention use the vision-expert weights
    image_rope_mask     0      1 … 1          0      0    all image slots share one rotary position

This script builds each piece with the toolkit's processors (same behaviour as upstream's)
on the shipped sample image and prints the layout with the masks beneath it.

Run:    python walkthroughs/04_inputs.py [--lang zh] [--no-pause] [--query TEXT] [--image PATH]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import DEFAULT_CONFIG, Walkthrough, run, walkthrough_folder

from tracer.cogvlm import SAMPLE_IMAGE  # the shipped picture (importing tracer.cogvlm is cheap)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"model config (default: {DEFAULT_CONFIG})")
    parser.add_argument("--image", default=str(SAMPLE_IMAGE), help="image file (default: the shipped sample)")
    parser.add_argument("--query", default="What is the red shape?", help="the question")
    parser.add_argument("--version", default="chat_old", choices=["base", "chat", "vqa", "chat_old"],
                        help="prompt template (default: chat_old, what cogvlm-chat-v1.1 uses)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where to write the token-layout picture, if the renderer is installed "
                             "(default: walkthroughs/04 in the cache folder, replaced by each run)")


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 04 · tokenizer, templates, image processing, token layout and the three masks",
            "演练 04 · 分词器、提示模板、图像预处理、token 排布与三个掩码")
    # Check the config before the slow SAT import: a wrong path is one clear line, at once.
    from tracer.cogvlm.config import load_config

    config = load_config(opts.config)
    w.say("Importing torch and SAT (a few seconds)…", "正在导入 torch 和 SAT（需要几秒）……")
    from sat.generation.autoregressive_sampling import filling_sequence
    from sat.model.official.vit_model import ImagePatchEmbeddingMixin

    from tracer.cogvlm import mixins
    from tracer.cogvlm.image_processor import ImageProcessor, get_image_processor, open_image
    from tracer.cogvlm.text_processor import TextProcessor, history_to_prompt, masks_and_position_ids
    from tracer.cogvlm.tokenizer import VERSIONS, tokenizer_for_config

    image_length = config.values["image_length"]  # L = (490 / 14)^2 = 1225 for the 490-px models
    eva = config.eva

    # ----------------------------------------------------------------------------------------
    # 1. the tokenizer
    # ----------------------------------------------------------------------------------------
    w.step("The tokenizer", "分词器")
    tokenizer = tokenizer_for_config(config.values, None, opts.version)
    w.print(f"  {tokenizer!r}")
    w.say("The real checkpoints use vicuna-7b-v1.5's Llama tokenizer (32000 ids, through transformers); the "
          "tiny configs ship a 2048-id SentencePiece model with the same special ids: unk 0, bos 1, eos 2.",
          "真实权重使用 vicuna-7b-v1.5 的 Llama 分词器（32000 个 id，经 transformers 加载）；tiny 配置附带一个 "
          "2048 个 id 的 SentencePiece 模型，特殊 id 与之相同：unk 0、bos 1、eos 2。")
    ids = tokenizer.encode(opts.query)
    w.table(["id", w.t("piece", "片段")], [(i, repr(tokenizer.decode([i]))) for i in ids])
    w.note("id 0 (<unk>) doubles as the placeholder of every image slot: the vision tower overwrites "
           "those embeddings, so the id itself never matters.",
           "id 0（<unk>）同时用作每个图像占位位置的 id：视觉塔会覆盖这些位置的嵌入，所以这个 id 本身无关紧要。")

    # ----------------------------------------------------------------------------------------
    # 2. prompt templates (the --version of cli_demo.py)
    # ----------------------------------------------------------------------------------------
    w.step("Prompt templates and history", "提示模板与对话历史")
    w.source(history_to_prompt, focus="if version == \"base\":", before=0, after=10)
    history = [("What is in the picture?", "Four shapes.")]
    for version in VERSIONS:
        w.print(f"  {version:<9} {history_to_prompt(version, opts.query, history)!r}")
    w.say("'<EOI>' marks where the image goes; the text processor replaces it with boi + L slots + eoi. "
          "base and vqa ignore the history; chat and chat_old replay it.",
          "'<EOI>' 标记图像的位置；文本处理器把它替换为 boi + L 个占位 + eoi。base 和 vqa 忽略历史；"
          "chat 和 chat_old 会把历史拼进提示。")

    # ----------------------------------------------------------------------------------------
    # 3. the image: RGB, bicubic resize, CLIP normalisation
    # ----------------------------------------------------------------------------------------
    w.step("Image processing", "图像预处理")
    image = open_image(opts.image)
    processor = get_image_processor(eva["image_size"])
    w.source(ImageProcessor.to_tensor, lines=7)
    pixels = processor(image)["image"]  # (1, 3, H, W)
    w.value(w.t("image file", "图像文件"), f"{opts.image}  {image.size[0]}x{image.size[1]} {image.mode}")
    w.value("processor(image)['image'].shape", tuple(pixels.shape))
    w.value(w.t("per-channel mean after normalising", "归一化后各通道的均值"), [round(v, 3) for v in pixels.mean(dim=(0, 2, 3)).tolist()])
    side = eva["image_size"][0] // eva["patch_size"]
    w.say(f"EVA cuts it into {eva['patch_size']}x{eva['patch_size']} patches: {side} x {side} = {side * side} "
          f"patches, plus one CLS token that its final mixin drops -> {image_length} image embeddings.",
          f"EVA 把图像切成 {eva['patch_size']}x{eva['patch_size']} 的 patch：{side} x {side} = {side * side} 个，"
          f"再加一个 CLS token（被其 final mixin 丢弃）-> {image_length} 个图像嵌入。")
    # In SAT, the patches are cut by the vision tower's word_embedding_forward hook: a strided Conv2d.
    w.source(ImagePatchEmbeddingMixin.word_embedding_forward, focus="embeddings = self.proj(images)",
             before=1, after=4)

    # ----------------------------------------------------------------------------------------
    # 4. the token layout
    # ----------------------------------------------------------------------------------------
    w.step("The token layout: ids, masks, position ids", "token 排布：id、掩码与位置 id")
    text_processor = TextProcessor(tokenizer, max_length=2048, image_length=image_length)
    prompt = text_processor.history_to_prompt(opts.query)
    inputs = text_processor(prompt)  # each (1, S)
    input_ids = inputs["input_ids"][0]  # (S,)
    # Position ids are made the way filling_sequence asks for them: get_func(seq) on the sequence.
    _, _, position_ids = masks_and_position_ids(input_ids, inputs["image_rope_mask"])  # (1, S)
    masks = {name: inputs[name][0].tolist() for name in ("image_embed_mask", "vision_expert_mask", "image_rope_mask")}
    w.value(w.t("prompt", "提示"), repr(prompt))
    w.value(w.t("sequence length S", "序列长度 S"),
            f"{len(input_ids)} = 1 (BOS) + {image_length + 2} (boi, image, eoi) + "
            f"{len(input_ids) - image_length - 3} ({w.t('text', '文本')})")

    def row(label: str, index: str, i: int) -> tuple[str, ...]:
        return (index, label, str(int(input_ids[i])), str(masks["image_embed_mask"][i]),
                str(masks["vision_expert_mask"][i]), str(masks["image_rope_mask"][i]), str(int(position_ids[0, i])))

    L = image_length
    rows = [row("[BOS]", "0", 0), row("[boi]", "1", 1),
            row(f"image x{L}", f"2…{L + 1}", 2), row("[eoi]", str(L + 2), L + 2)]
    rows += [row(repr(tokenizer.decode([int(input_ids[i])])), str(i), i) for i in range(L + 3, len(input_ids))]
    w.table(["index", "token", "id", "image_embed", "vision_expert", "image_rope", "position_id"], rows)
    w.say(f"  sums: image_embed_mask {sum(masks['image_embed_mask'])} = L+2, vision_expert_mask "
          f"{sum(masks['vision_expert_mask'])} = L+1, image_rope_mask {sum(masks['image_rope_mask'])} = L",
          f"  求和：image_embed_mask {sum(masks['image_embed_mask'])} = L+2，vision_expert_mask "
          f"{sum(masks['vision_expert_mask'])} = L+1，image_rope_mask {sum(masks['image_rope_mask'])} = L")
    w.say(f"  position ids: the {L} image slots all get id 2, so the text starts at position "
          f"{int(position_ids[0, L + 3])}, not {L + 3}.",
          f"  位置 id：{L} 个图像位置共享 id 2，所以文本从位置 {int(position_ids[0, L + 3])} 开始，而不是 {L + 3}。")

    # ----------------------------------------------------------------------------------------
    # 5. who reads each mask
    # ----------------------------------------------------------------------------------------
    w.step("Who reads each mask", "每个掩码由谁读取")
    w.say("image_embed_mask -> mixin 'eva' (word_embedding_forward): those L+2 rows become boi, GLU(EVA(image)), eoi.",
          "image_embed_mask -> mixin 'eva'（word_embedding_forward）：这 L+2 行被替换为 boi、GLU(EVA(图像))、eoi。")
    w.source(mixins.ImageMixin.word_embedding_forward, focus="word_embedding[image_embed_mask]", before=4, after=0)
    w.say("vision_expert_mask -> mixins 'mlp' and 'rotary': those L+1 tokens use the vision-expert weights.",
          "vision_expert_mask -> mixin 'mlp' 和 'rotary'：这 L+1 个 token 使用视觉专家的权重。")
    w.source(mixins.LlamaVisionExpertFCMixin.mlp_forward, focus="output[~vision_mask] = language(", before=3, after=4)
    w.say("image_rope_mask -> the position ids (one shared rotary position), through the get_func that "
          "filling_sequence calls on the whole sequence:",
          "image_rope_mask -> 位置 id（共享同一个旋转位置），通过 filling_sequence 对整个序列调用的 get_func：")
    w.source(filling_sequence, focus="tokens, attention_mask, position_ids = get_masks_and_position_ids(seq)",
             before=4, after=2)

    # ----------------------------------------------------------------------------------------
    # 6. the same layout as a picture (the renderer behind `cogtrace render --format tokens`)
    # ----------------------------------------------------------------------------------------
    w.step("The same layout as a picture", "同样的排布画成图片")
    from tracer.cogvlm.tokens import layout_png, render_layout_text

    def piece(i: int) -> str:
        """What to print for position i: the image slots all hold id 0, so name them by role."""
        if masks["image_rope_mask"][i]:
            return "<image>"
        if masks["image_embed_mask"][i]:
            return "<boi>" if masks["vision_expert_mask"][i] else "<eoi>"
        return tokenizer.decode([int(input_ids[i])])

    layout = {"tokens": input_ids.tolist(), "pieces": [piece(i) for i in range(len(input_ids))],
              **masks, "position_ids": position_ids[0].tolist()}
    w.print(render_layout_text(layout, width=110))
    out_dir = Path(opts.out) if opts.out else walkthrough_folder("04")
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = out_dir / "token_layout.png"
    picture.write_bytes(layout_png(layout))
    w.value("token_layout.png", picture)

    w.done("Done. Next: 05_generation.py feeds these inputs to the model, token by token.",
           "完成。下一步：05_generation.py 把这些输入送进模型，逐个 token 生成。")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
