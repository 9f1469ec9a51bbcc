"""Walkthrough 06 — grounding: boxes in the answer become rectangles in ``output.png``.

``cogvlm-grounding-generalist`` (the checkpoint the article studies) answers with boxes right
after the phrase they belong to. Coordinates are fractions of the image size times 1000,
written as three digits, top-left corner first::

    A red square [[102,122,398,418]] is left of a blue circle [[561,143,878,459]].

``cli_demo.py`` then parses the boxes and draws them into ``./output.png`` (the article's
section 3.5, last step). This script:

1. runs one grounding turn on the tiny model (random weights: the pipeline is real, the
   answer is noise and has no boxes);
2. parses an answer of the shape the real checkpoint gives for the shipped sample image,
   maps 000–999 to pixels, draws and saves ``output.png`` — in a folder of its own (``--out``,
   default a new temporary folder), never in the current directory;
3. shows what happens to malformed boxes.

Run:    python walkthroughs/06_grounding.py [--lang zh] [--no-pause] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import DEFAULT_CONFIG, Walkthrough, run, walkthrough_folder

from tracer.cogvlm import SAMPLE_IMAGE  # the shipped picture (importing tracer.cogvlm is cheap)

# What the grounding checkpoint answers for the sample picture, box by box (measured by hand on
# the 490 x 490 image: the red square spans pixels 50-195 horizontally -> 050/490*1000 = 102 ...).
CRAFTED_ANSWER = ("A red square [[102,122,398,418]] is left of a blue circle [[561,143,878,459]]; "
                  "below them are a green triangle [[306,571,694,918]] and a yellow star [[739,612,955,816]].")
MALFORMED_ANSWER = "a cat [[100,200,300]] and a dog [[900,100,200,400]] and a bird [[12,34,56,1200]]"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"model config (default: {DEFAULT_CONFIG})")
    parser.add_argument("--image", default=str(SAMPLE_IMAGE), help="image file (default: the shipped sample)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for output.png (default: walkthroughs/06 in the cache folder, replaced by each run)")


def main(argv: Sequence[str] | None = None) -> int:
    w, opts = Walkthrough.from_argv(__doc__, argv, add_arguments)
    w.title("Walkthrough 06 · grounding: [[x0,y0,x1,y1]] → output.png",
            "演练 06 · 视觉定位（grounding）：[[x0,y0,x1,y1]] → output.png")
    w.say("Importing torch and SAT (a few seconds)…", "正在导入 torch 和 SAT（需要几秒）……")
    from tracer.cogvlm.chat import SamplingOptions, add_autoregressive_mixin, chat
    from tracer.cogvlm.checkpoint import load_model
    from tracer.cogvlm.grounding import Box, draw_grounding, parse_grounding, save_atomically
    from tracer.cogvlm.image_processor import get_image_processor, open_image
    from tracer.cogvlm.text_processor import TextProcessor, grounding_prompt
    from tracer.cogvlm.tokenizer import tokenizer_for_config

    out_dir = Path(opts.out) if opts.out else walkthrough_folder("06")
    out_dir.mkdir(parents=True, exist_ok=True)
    image = open_image(opts.image)

    # ----------------------------------------------------------------------------------------
    # 1. one grounding turn on the tiny model
    # ----------------------------------------------------------------------------------------
    w.step("A grounding turn on the tiny model", "在 tiny 模型上跑一轮 grounding 对话")
    model, args = load_model(opts.config)
    add_autoregressive_mixin(model)  # cli_demo.py: model.add_mixin('auto-regressive', ...)
    # The grounding checkpoint was trained with the 'base' template: '<EOI>' + the request.
    tokenizer = tokenizer_for_config(vars(args), None, "base")
    text_processor = TextProcessor(tokenizer, max_length=2048, image_length=args.image_length)
    query = grounding_prompt("caption_with_box")
    w.source(chat, focus="output = filling_sequence(", before=3, after=3)  # walkthrough 05, in one call
    context = text_processor(text_processor.history_to_prompt(query))["input_ids"].shape[1]  # prompt tokens
    result = chat(image, model, text_processor, get_image_processor(args.eva_args["image_size"]), query,
                  options=SamplingOptions(max_length=context + 8, top_k=1))  # room for 8 new tokens
    w.value(w.t("prompt", "提示"), repr(result.prompt))
    # With 'base' the answer is everything after the last image slot, i.e. the request itself
    # plus the continuation (upstream's behaviour); show only what the model generated.
    generated = tokenizer.decode(result.generated_ids)
    n = len(result.generated_ids)
    w.value(w.t(f"generated ({n} tokens)", f"生成的内容（{n} 个 token）"), repr(generated[:80]))
    w.value(w.t("boxes found", "找到的框"), len(parse_grounding(generated).boxes))
    w.note("Random weights never write a well-formed box. The next step uses an answer in the real "
           "checkpoint's format instead; everything after chat() is the same code.",
           "随机权重不会生成格式正确的框。下一步改用真实权重格式的回答；chat() 之后的代码完全相同。")

    # ----------------------------------------------------------------------------------------
    # 2. parse a real-format answer and draw it
    # ----------------------------------------------------------------------------------------
    w.step("Parse the boxes, map 000–999 to pixels, draw", "解析框，把 000–999 映射到像素，画出来")
    w.value(w.t("answer", "回答"), CRAFTED_ANSWER)
    grounding = parse_grounding(CRAFTED_ANSWER)
    width, height = image.size
    rows = []
    for item in grounding.phrases:
        for box in item.boxes:
            rows.append((item.phrase, f"[[{box.x0:03d},{box.y0:03d},{box.x1:03d},{box.y1:03d}]]",
                         str(box.to_pixels(width, height))))
    w.table([w.t("phrase", "短语"), "0–999", w.t(f"pixels on {width}x{height}", f"{width}x{height} 上的像素")], rows)
    w.say("pixel = int(value / 1000 * image size); the phrase is the text just before its box. Grounding is "
          "CogVLM's code, not SAT's (upstream: utils/utils/grounding_parser.py); the toolkit's version:",
          "像素 = int(数值 / 1000 * 图像边长)；短语取紧挨在框前面的那段文字。grounding 属于 CogVLM 的代码而不是 "
          "SAT（上游：utils/utils/grounding_parser.py）；本工具的实现：")
    w.source(Box.to_pixels, lines=5)
    output = save_atomically(draw_grounding(image, grounding), out_dir / "output.png")
    w.value("output.png", output)
    w.say(f"  -> open {output} to see the four boxes.", f"  -> 打开 {output} 查看四个框。")

    # ----------------------------------------------------------------------------------------
    # 3. malformed boxes are reported, not drawn
    # ----------------------------------------------------------------------------------------
    w.step("Malformed boxes", "格式错误的框")
    w.value(w.t("answer", "回答"), MALFORMED_ANSWER)
    bad = parse_grounding(MALFORMED_ANSWER)
    for reason in bad.rejected:
        w.print(f"    ✗ {reason}")
    w.say(f"  drawable boxes: {len(bad.boxes)}", f"  可以绘制的框：{len(bad.boxes)}")

    w.done("Done. Next: 07_full_size_meta.py builds the real 17.6B model without any memory.",
           "完成。下一步：07_full_size_meta.py 在不占内存的情况下构建真实的 17.6B 模型。")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
