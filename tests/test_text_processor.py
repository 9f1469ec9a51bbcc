"""The text processor: templates, image-slot expansion, the three masks and position ids, checked
position by position on concrete prompts (and against a reference written from upstream's rules)."""

from __future__ import annotations

import pytest
import torch

from tracer.cogvlm.text_processor import (
    GROUNDING_PROMPTS,
    SEPARATORS,
    TextProcessor,
    grounding_prompt,
    history_to_prompt,
    masks_and_position_ids,
    position_ids_from_rope_mask,
)
from tracer.cogvlm.tokenizer import SentencePieceTokenizer, load_tokenizer
from tracer.errors import UserError

HISTORY = [("What is red?", "A square."), ("And blue?", "A circle.")]


@pytest.fixture(scope="module")
def tok() -> SentencePieceTokenizer:
    return SentencePieceTokenizer(signal_type="chat")


def _processor(version: str, image_length: int = 4, max_length: int = 64) -> TextProcessor:
    return TextProcessor(load_tokenizer(None, version), max_length, image_length)


# ---------------------------------------------------------------------------------------------
# Templates


def test_templates_with_history() -> None:
    assert history_to_prompt("base", "Describe it.", HISTORY) == "<EOI>Describe it."
    assert history_to_prompt("vqa", "How many?", HISTORY) == "<EOI>Question: How many? Short answer:"
    assert history_to_prompt("chat", "Green?") == "<EOI> [INST] Green? [/INST] "
    assert history_to_prompt("chat", "Green?", HISTORY) == (
        "<EOI> [INST] What is red? [/INST] A square. [INST] And blue? [/INST] A circle. [INST] Green? [/INST] ")
    assert history_to_prompt("chat_old", "Green?", HISTORY) == (
        "<EOI>Question: What is red? Answer: A square.\nQuestion: And blue? Answer: A circle.\n"
        "Question: Green? Answer:")


def test_unknown_version() -> None:
    with pytest.raises(UserError, match="unknown version 'grounding'"):
        history_to_prompt("grounding", "q")


def test_separators_and_process_response() -> None:
    assert {v: _processor(v).sep for v in SEPARATORS} == {
        "chat": "[/INST]", "vqa": " Short answer:", "chat_old": " Answer:", "base": "<unk>"}
    assert _processor("chat").process_response("A cat.</s>") == "A cat."


def test_grounding_prompts() -> None:
    assert set(GROUNDING_PROMPTS) == {"caption_with_box", "caption2box", "box2caption"}
    assert "the red square" in grounding_prompt("caption2box", expr="the red square")
    assert "[[102,120,398,415]]" in grounding_prompt("box2caption", objs="[[102,120,398,415]]")
    with pytest.raises(ValueError, match="unknown grounding mode"):
        grounding_prompt("box_qa")


# ---------------------------------------------------------------------------------------------
# Layout, masks and position ids on a concrete prompt (L = 4 image tokens)


def test_vqa_prompt_layout_exactly(tok: SentencePieceTokenizer) -> None:
    processor = _processor("vqa", image_length=4)
    out = processor("How many shapes?")
    text = tok.encode("Question: How many shapes? Short answer:")
    n = len(text)
    #          BOS  boi  4 image slots  eoi  text
    assert out["input_ids"][0].tolist() == [1, 0, 0, 0, 0, 0, 0, *text]
    assert out["image_embed_mask"][0].tolist() == [0, 1, 1, 1, 1, 1, 1] + [0] * n
    assert out["vision_expert_mask"][0].tolist() == [0, 1, 1, 1, 1, 1, 0] + [0] * n
    assert out["image_rope_mask"][0].tolist() == [0, 0, 1, 1, 1, 1, 0] + [0] * n
    for key in ("input_ids", "image_embed_mask", "vision_expert_mask", "image_rope_mask"):
        assert out[key].shape == (1, 7 + n) and out[key].dtype == torch.long

    # All four image slots share position 2; boi is 1, eoi 3, text 4, 5, ...
    positions = position_ids_from_rope_mask(out["image_rope_mask"][0])
    assert positions[0].tolist() == [0, 1, 2, 2, 2, 2, 3, *range(4, 4 + n)]


def test_get_func_continues_positions_into_the_generated_part() -> None:
    processor = _processor("base", image_length=4)
    out = processor("Hi")
    ids = out["input_ids"][0]
    context = len(ids)
    seq = torch.cat([ids, torch.full((5,), -1)])  # what chat() hands filling_sequence
    tokens, attention_mask, position_ids = processor.get_func(ids, **out)(seq)
    assert tokens.shape == (1, context + 5) and tokens[0, -1] == -1
    assert attention_mask.shape == (1, 1, context + 5, context + 5)
    assert torch.equal(attention_mask[0, 0], torch.ones(context + 5, context + 5).tril())
    expected = [0, 1, 2, 2, 2, 2, 3, *range(4, context - 3 + 5)]
    assert position_ids[0].tolist() == expected
    assert position_ids[0, -1] == context + 5 - 1 - 3  # 4 image slots, one id: 3 positions saved


def test_real_tiny_geometry() -> None:
    """L = 1225 (490 px / 14): spans of 1227, 1226 and 1225; text resumes at position 4."""
    processor = _processor("chat_old", image_length=1225, max_length=2048)
    out = processor("What is here?")
    embed, expert, rope = (out[k][0] for k in ("image_embed_mask", "vision_expert_mask", "image_rope_mask"))
    assert (int(embed.sum()), int(expert.sum()), int(rope.sum())) == (1227, 1226, 1225)
    assert embed[1:1228].all() and expert[1:1227].all() and rope[2:1227].all()
    positions = position_ids_from_rope_mask(rope)[0]
    assert positions[:4].tolist() == [0, 1, 2, 2] and positions[1226].item() == 2
    assert positions[1227].item() == 3 and positions[1228].item() == 4
    assert positions[-1].item() == len(rope) - 1 - 1224


def test_tags_are_stripped_from_a_bare_query(tok: SentencePieceTokenizer) -> None:
    processor = _processor("base", image_length=2)
    out = processor("a cat</s><s><pad>")  # no <EOI>: a bare query, cleaned, then templated
    assert int(out["image_embed_mask"].sum()) == 4
    assert out["input_ids"][0, 5:].tolist() == tok.encode("a cat")
    assert processor.replace_tags_with_empty("a <EOI>cat</s>") == "a cat"


def test_two_images(tok: SentencePieceTokenizer) -> None:
    processor = _processor("base", image_length=2)
    out = processor("<EOI>left<EOI>right")  # a prompt with marks is used as is
    left, right = tok.encode("left"), tok.encode("right")
    ids = [1, 0, 0, 0, 0, *left, 0, 0, 0, 0, *right]
    assert out["input_ids"][0].tolist() == ids
    a, b = 5 + len(left), 5 + len(left) + 4
    assert out["image_rope_mask"][0].tolist() == [0, 0, 1, 1, 0] + [0] * len(left) + [0, 1, 1, 0] + [0] * len(right)
    assert out["vision_expert_mask"][0, a:b].tolist() == [1, 1, 1, 0]
    positions = position_ids_from_rope_mask(out["image_rope_mask"][0])[0].tolist()
    assert positions[:5] == [0, 1, 2, 2, 3]
    assert positions[a:b] == [positions[a - 1] + 1, positions[a - 1] + 2, positions[a - 1] + 2, positions[a - 1] + 3]


# ---------------------------------------------------------------------------------------------
# Against a reference written from upstream's algorithm (placeholder -100, then -1 marks eoi)


def _reference(tok: SentencePieceTokenizer, prompt: str, L: int) -> dict[str, list[int]]:
    first, *rest = prompt.split("<EOI>")
    ids = [tok.bos_token_id, *tok.encode(first)]
    for text in rest:
        ids += [-100, *tok.encode(text)]
    while -100 in ids:
        i = ids.index(-100)
        ids = ids[:i] + [0] * (L + 1) + [-1] + ids[i + 1:]
    eois = []
    while -1 in ids:
        i = ids.index(-1)
        ids[i] = 0
        eois.append(i)
    embed, expert, rope = [0] * len(ids), [0] * len(ids), [0] * len(ids)
    for i in eois:
        embed[i - L - 1: i + 1] = [1] * (L + 2)
        expert[i - L - 1: i] = [1] * (L + 1)
        rope[i - L: i] = [1] * L
    pos, pid = [], -1
    for i, m in enumerate(rope):
        if m == 0 or (i > 0 and m != rope[i - 1]):
            pid += 1
        pos.append(pid)
    return {"input_ids": ids, "image_embed_mask": embed, "vision_expert_mask": expert, "image_rope_mask": rope,
            "position_ids": pos}


@pytest.mark.parametrize("version", ["base", "chat", "vqa", "chat_old"])
def test_matches_reference(version: str) -> None:
    processor = _processor(version, image_length=9)
    prompt = processor.history_to_prompt("Where is the star?", [("Hi", "Hello.")])
    out = processor(prompt)
    ref = _reference(processor.tokenizer, prompt, 9)  # type: ignore[arg-type]
    for key in ("input_ids", "image_embed_mask", "vision_expert_mask", "image_rope_mask"):
        assert out[key][0].tolist() == ref[key], key
    assert position_ids_from_rope_mask(out["image_rope_mask"])[0].tolist() == ref["position_ids"]


def test_masks_and_position_ids_rejects_short_total() -> None:
    with pytest.raises(ValueError, match="shorter than the mask"):
        position_ids_from_rope_mask([0, 1, 0], total_length=2)
    tokens, mask, pos = masks_and_position_ids(torch.tensor([1, 0, 0, 5, -1]), torch.tensor([[0, 0, 1, 0]]))
    assert pos[0].tolist() == [0, 1, 2, 3, 4]


def test_sampler_never_picks_ids_the_tokenizer_cannot_decode() -> None:
    """A model with more ids than its tokenizer: the extra ids are invalid for the sampler."""
    from sat.generation.sampling_strategies import BaseStrategy

    from tracer.cogvlm.build import build_model

    build_model("configs/tiny/cogvlm-base-224", device="meta")  # SAT's sampler needs its model-parallel set-up
    processor = TextProcessor(load_tokenizer(None, "base"))
    vocab = processor.tokenizer.vocab_size
    assert processor.invalid_slices == [slice(vocab, None)]
    logits = torch.zeros(1, vocab + 16)
    logits[0, vocab + 3] = 100.0  # the model's favourite is beyond the tokenizer
    logits[0, 7] = 50.0
    strategy = BaseStrategy(top_k=1, end_tokens=[2], invalid_slices=processor.invalid_slices)
    tokens, _ = strategy.forward(logits, torch.zeros(1, 1, dtype=torch.long), None)
    assert int(tokens[0, -1]) == 7
