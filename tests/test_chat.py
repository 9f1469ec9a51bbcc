"""chat() on a tiny CogVLM loaded through the real checkpoint path, and ``cogtrace chat`` end to end,
including every bad input of issue 3 item 8 (one line, non-zero exit, no traceback, no output.png)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import png_header_only
from PIL import Image

import tracer.cogvlm.chat  # noqa: F401  (import SAT now, so its import-time logging is not captured below)
from tracer.cli import main
from tracer.cogvlm.chat import (
    ChatResult,
    SamplingOptions,
    add_autoregressive_mixin,
    chat,
    clean_response,
    stream_chat,
)
from tracer.cogvlm.image_processor import get_image_processor
from tracer.cogvlm.text_processor import TextProcessor
from tracer.cogvlm.tokenizer import load_tokenizer
from tracer.errors import UserError

CONFIG = "tiny/cogvlm-grounding-generalist"
SAMPLE = Path(__file__).resolve().parent.parent / "tracer" / "cogvlm" / "assets" / "sample.png"
NEW_TOKENS = 8


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: generation feeds one token per step, too little work to split, and
    on a busy 2-core machine two spinning threads made these tests 4x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tracer.cogvlm.checkpoint import load_model

    with pytest.MonkeyPatch.context() as mp:  # the same private cache conftest.py sets per test
        mp.setenv("COGTRACE_CACHE", str(tmp_path_factory.getbasetemp() / "cogtrace-cache"))
        loaded, _ = load_model(CONFIG, device="cpu")
    yield add_autoregressive_mixin(loaded)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.open(SAMPLE).convert("RGB")


def _processor(version: str) -> TextProcessor:
    return TextProcessor(load_tokenizer(None, version), 2048, 1225)


def _options(processor: TextProcessor, query: str, history: list[tuple[str, str]] | None = None,
             **sampling: Any) -> SamplingOptions:
    """Room for NEW_TOKENS after the prompt: keeps every test to a handful of cached steps."""
    ids, _ = processor.token_ids(processor.history_to_prompt(query, history or []))
    return SamplingOptions(max_length=len(ids) + NEW_TOKENS, **sampling)


def _chat(model: Any, image: Image.Image, version: str, query: str, history: list[tuple[str, str]] | None = None,
          **sampling: Any) -> ChatResult:
    processor = _processor(version)
    return chat(image, model, processor, get_image_processor(490), query, history,
                _options(processor, query, history, **sampling))


# ---------------------------------------------------------------------------------------------
# chat()


def test_same_seed_same_answer(model: Any, image: Image.Image) -> None:
    sampling = dict(top_k=50, top_p=0.95, temperature=1.0)
    a = _chat(model, image, "chat", "What is in the image?", seed=7, **sampling)
    b = _chat(model, image, "chat", "What is in the image?", seed=7, **sampling)
    c = _chat(model, image, "chat", "What is in the image?", seed=8, **sampling)
    assert a.output_ids == b.output_ids and a.response == b.response
    assert a.output_ids != c.output_ids  # the seed does drive the sampling
    assert 0 < len(a.generated_ids) <= NEW_TOKENS


@pytest.mark.parametrize("version", ["base", "chat", "vqa", "chat_old"])
def test_every_template_runs(model: Any, image: Image.Image, version: str) -> None:
    processor = _processor(version)
    result = _chat(model, image, version, "Where is the red square?")
    assert result.prompt == processor.history_to_prompt("Where is the red square?")
    assert result.context_length == len(processor.token_ids(result.prompt)[0])
    assert result.output_ids[:result.context_length] == processor.token_ids(result.prompt)[0]
    assert result.history == [("Where is the red square?", result.response)]
    # The answer is what the model generated, cleaned: never the prompt again (upstream's base
    # template has no answer marker, so splitting the whole text repeated the query).
    generated = processor.tokenizer.decode(result.generated_ids)
    assert result.response == clean_response(generated, processor.sep)
    assert "\ufffd" not in result.response and "</s>" not in result.response


def test_history_goes_into_the_next_prompt(model: Any, image: Image.Image) -> None:
    first = _chat(model, image, "chat_old", "What is red?")
    second = _chat(model, image, "chat_old", "And blue?", first.history)
    assert second.prompt == f"<EOI>Question: What is red? Answer: {first.response}\nQuestion: And blue? Answer:"
    assert [q for q, _ in second.history] == ["What is red?", "And blue?"]


def test_stream_gives_the_same_answer(model: Any, image: Image.Image) -> None:
    processor = _processor("chat")
    options = _options(processor, "Describe it.", seed=3, top_k=20, top_p=0.9, temperature=1.0)
    plain = chat(image, model, processor, get_image_processor(490), "Describe it.", None, options)
    pieces: list[str] = []
    stream = stream_chat(image, model, processor, get_image_processor(490), "Describe it.", None, options)
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            streamed: ChatResult = done.value
            break
    assert streamed.output_ids == plain.output_ids and streamed.response == plain.response
    streamed_text = "".join(pieces)
    assert streamed_text and streamed_text == streamed_text.lstrip()
    if "[/INST]" not in streamed_text:
        assert streamed_text.rstrip() == streamed.response


def test_caller_rng_is_untouched(model: Any, image: Image.Image) -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _chat(model, image, "vqa", "How many shapes?", seed=5, top_k=10, temperature=1.0)
    assert torch.equal(torch.rand(3), expected)


def test_cached_generation_matches_full_forwards(model: Any, image: Image.Image) -> None:
    """Greedy tokens from filling_sequence (one token per step, KV cache) equal the argmax of a
    full forward over the whole sequence with no cache."""
    processor = _processor("chat")
    result = _chat(model, image, "chat", "What colour is the circle?", top_k=1)
    inputs = processor(result.prompt)
    vision = {f"vision_{k}": v for k, v in get_image_processor(490)(image).items()}
    for step in range(2):
        ids = torch.tensor(result.output_ids[:result.context_length + step])  # (C+step,)
        tokens, attention_mask, position_ids = processor.get_func(ids, **inputs)(ids)
        pad = step  # masks cover the prompt; the generated tail is text
        masks = {k: torch.nn.functional.pad(inputs[k], (0, pad))
                 for k in ("image_embed_mask", "vision_expert_mask", "image_rope_mask")}
        with torch.no_grad():
            logits = model(input_ids=tokens, position_ids=position_ids, attention_mask=attention_mask,
                           mems=None, **masks, **vision)[0]  # (1, C+step, vocab)
        assert int(logits[0, -1].argmax()) == result.output_ids[result.context_length + step]


def test_chat_refuses_bad_input(model: Any, image: Image.Image) -> None:
    processor = _processor("chat")
    ip = get_image_processor(490)
    with pytest.raises(UserError, match="empty query"):
        chat(image, model, processor, ip, "  ")
    with pytest.raises(UserError, match="empty query"):
        chat(image, model, processor, ip, "<EOI></s>")  # nothing left once the tags are removed
    with pytest.raises(UserError, match=r"expected --max-length of at least 12\d\d"):
        chat(image, model, processor, ip, "Hi", options=SamplingOptions(max_length=1000))
    with pytest.raises(UserError, match="--top-p 2.0"):
        chat(image, model, processor, ip, "Hi", options=SamplingOptions(top_p=2.0))
    with pytest.raises(UserError, match="empty query"):
        stream_chat(image, model, processor, ip, "")  # at the call, before any next()
    bare = type("Bare", (), {"mixins": {}})()
    with pytest.raises(ValueError, match="add_autoregressive_mixin"):
        chat(image, bare, processor, ip, "Hi")  # type: ignore[arg-type]


def test_eoi_typed_in_a_query_opens_no_second_image(model: Any, image: Image.Image) -> None:
    processor = _processor("vqa")
    options = _options(processor, "Is this a square?")  # the cleaned query sets the room
    result = chat(image, model, processor, get_image_processor(490), "Is <EOI>this a square?", None, options)
    assert result.prompt == "<EOI>Question: Is this a square? Short answer:"
    assert len(result.generated_ids) <= NEW_TOKENS


# ---------------------------------------------------------------------------------------------
# cogtrace chat


def _cli(*extra: str, out: Path, max_length: int = 1245) -> list[str]:
    return ["chat", CONFIG, "--max-length", str(max_length), "--output", str(out), *extra]


def test_cli_one_turn_writes_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "output.png"
    assert main(_cli("--query", "Where is the red square?", out=out)) == 0
    stdout = capsys.readouterr().out
    assert "[Language processor version]: base" in stdout  # grounding-generalist uses base upstream
    answer = next(line for line in stdout.splitlines() if line.startswith("Model: "))
    assert not answer.startswith("Model: Where is the red square?")  # the answer, not the prompt again
    with Image.open(out) as saved:
        assert saved.format == "PNG" and saved.size == (1080, 1080)


def test_cli_stream_gives_the_same_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "output.png"
    args = _cli("--query", "What is here?", "--version", "chat", "--top-k", "30", "--temperature", "1",
                "--seed", "11", out=out)
    answers = []
    for extra in ([], ["--stream"]):  # same seed: the same answer, printed at once or piece by piece
        assert main(args + extra) == 0
        answers.append([line for line in capsys.readouterr().out.splitlines() if line.startswith("Model: ")])
    assert answers[0] == answers[1] and len(answers[0]) == 1


def test_cli_interactive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "output.png"
    # Enter (default image); an empty query (error, the loop goes on); a question; clear; a bad
    # image path (error, asked again); the sample; a question; then end of input (Ctrl-D).
    script = f"\n\nWhat is red?\nclear\n{tmp_path / 'nope.png'}\n{SAMPLE}\nAnd blue?\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert main(_cli(out=out)) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("Model: ") == 2
    assert "error: empty query" in stdout and "nope.png: no such image file" in stdout
    assert out.is_file()


def test_cli_with_a_transformers_tokenizer_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--tokenizer DIR takes the vicuna path (transformers' LlamaTokenizer); the tiny model stands in."""
    import json
    import shutil

    from tracer.cogvlm.tokenizer import TINY_TOKENIZER

    pytest.importorskip("transformers", reason="transformers is needed for tokenizer directories")
    folder = tmp_path / "vicuna-like"
    folder.mkdir()
    shutil.copy(TINY_TOKENIZER, folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": False}))
    out = tmp_path / "output.png"
    assert main(_cli("--query", "Where is the blue circle?", "--tokenizer", str(folder), out=out)) == 0
    answer = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Model: "))
    assert len(answer) > len("Model: ") and not answer.startswith("Model: Where is the blue circle?")
    assert out.is_file()


@pytest.mark.parametrize("script", ["stop\n", "\nstop\n"])
def test_cli_interactive_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                              script: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))  # at the image prompt, or at the first question
    assert main(_cli(out=tmp_path / "output.png")) == 0
    assert "Model: " not in capsys.readouterr().out


def _bad_image(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.png"
    if kind == "not_an_image":
        path.write_text("hello, I am text\n")
    elif kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        Image.effect_noise((64, 64), 40).convert("RGB").save(path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "bomb":
        path.write_bytes(png_header_only(20_000, 20_000))
    return path  # "missing": never written


@pytest.mark.parametrize("case, message", [
    ("missing", "no such image file"),
    ("not_an_image", "not an image file"),
    ("zero_byte", "empty file (0 bytes)"),
    ("truncated", "truncated or corrupt image"),
    ("bomb", "decompression bomb"),
    ("empty_query", "empty query"),
    ("blank_query", "empty query"),
    ("too_long", "expected --max-length of at least"),
    ("unknown_version", "unknown version 'grounding': expected one of base, chat, vqa, chat_old"),
    ("bad_config", "no such config"),
    ("output_folder_missing", "does not exist"),
    ("bad_top_p", "--top-p 1.5: expected a number between 0 and 1"),
    ("bad_threads", "--threads 0: expected a positive integer"),
])
def test_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str) -> None:
    out = tmp_path / "output.png"
    argv = _cli("--query", "What is here?", out=out)
    if case in ("missing", "not_an_image", "zero_byte", "truncated", "bomb"):
        argv += ["--image", str(_bad_image(tmp_path, case))]
    elif case == "empty_query":
        argv[argv.index("What is here?")] = ""
    elif case == "blank_query":
        argv[argv.index("What is here?")] = "   "
    elif case == "too_long":
        argv = _cli("--query", "What is here?", out=out, max_length=100)
    elif case == "unknown_version":
        argv += ["--version", "grounding"]
    elif case == "bad_config":
        argv[1] = str(tmp_path / "no-such-model")
    elif case == "output_folder_missing":
        out = tmp_path / "missing" / "output.png"
        argv[argv.index("--output") + 1] = str(out)
    elif case == "bad_top_p":
        argv += ["--top-p", "1.5"]
    elif case == "bad_threads":
        argv += ["--threads", "0"]

    code = main(argv)
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2
    assert len(err) == 1 and err[0].startswith("cogtrace chat: error: ") and message in err[0], err
    assert "Traceback" not in captured.err + captured.out
    assert captured.out == ""  # failed before loading anything
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []


def test_cli_non_square_vision_tower(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config's image_size is [height, width]: a 224x112 tower gets 224x112 images (128 tokens)."""
    import json

    values = json.loads((Path(__file__).parent.parent / "configs/tiny/cogvlm-base-224/model_config.json").read_text())
    values["eva_args"].update(image_size=[224, 112], max_sequence_length=1 + 16 * 8)
    values["image_length"] = 16 * 8
    folder = tmp_path / "cogvlm-base-224x112"
    folder.mkdir()
    (folder / "model_config.json").write_text(json.dumps(values))
    out = tmp_path / "out.png"
    assert main(["chat", str(folder), "--query", "What is it?", "--max-length", "160", "--output", str(out)]) == 0
    assert "128 image slots" in capsys.readouterr().out and out.is_file()
