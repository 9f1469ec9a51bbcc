"""The tiny SentencePiece tokenizer: reproducible build, Llama's special ids, round trips, and the
transformers path a real vicuna-7b-v1.5 directory takes."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tracer.cogvlm.config import CONFIG_ROOT
from tracer.cogvlm.tokenizer import (
    TINY_TOKENIZER,
    LlamaTokenizerAdapter,
    SentencePieceTokenizer,
    load_tokenizer,
    tokenizer_for_config,
)
from tracer.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
TINY_CONFIGS = sorted((CONFIG_ROOT / "tiny").glob("*/model_config.json"))


def _build_script():
    spec = importlib.util.spec_from_file_location("build_tiny_tokenizer", ROOT / "scripts" / "build_tiny_tokenizer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tok() -> SentencePieceTokenizer:
    return SentencePieceTokenizer(TINY_TOKENIZER, "chat")


def test_rebuild_gives_identical_bytes(tmp_path: Path) -> None:
    script = _build_script()
    corpus = tmp_path / "corpus.txt"  # a copy elsewhere: the path must not leak into the model
    shutil.copy(script.CORPUS, corpus)
    assert script.build_model_bytes(corpus) == TINY_TOKENIZER.read_bytes()


def test_vocab_matches_every_tiny_config(tok: SentencePieceTokenizer) -> None:
    assert len(TINY_CONFIGS) == 5  # the four published checkpoints shrunk, and the trained one
    for path in TINY_CONFIGS:
        values = json.loads(path.read_text())
        assert values["vocab_size"] == tok.vocab_size == 2048, path
        assert values["tokenizer_type"] == "tiny-llama-sp"
        assert (values["bos_token_id"], values["eos_token_id"]) == (tok.bos_token_id, tok.eos_token_id)


def test_llama_special_ids(tok: SentencePieceTokenizer) -> None:
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 3)
    assert [tok.sp.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    assert (tok.boi, tok.eoi, tok.signal_type) == ("[IMG]", "[/IMG]", "chat")


@pytest.mark.parametrize("text", [
    "What colour is the circle?",
    " [INST] Describe the image. [/INST] ",
    "The red square [[102,120,398,415]] is on the left.",
    "这张图片里有什么？红色的正方形。",
    "Zebra quokka 😀 ünïcödé",  # not in the corpus: byte fallback, never <unk>
])
def test_round_trip_without_unk(tok: SentencePieceTokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_digits_are_split(tok: SentencePieceTokenizer) -> None:
    pieces = [tok.sp.id_to_piece(i) for i in tok.encode("[[086,540]]")]
    assert [p for p in pieces if p.isdigit()] == list("086540")


def test_add_special_tokens_and_decode_of_specials(tok: SentencePieceTokenizer) -> None:
    ids = tok.encode("A cat.", add_special_tokens=True)
    assert ids[0] == 1 and ids[1:] == tok.encode("A cat.")
    assert tok.decode([1, 0, 0, *tok.encode("A cat."), 2]) == "<s><unk><unk>A cat.</s>"
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([2048])


def test_unknown_version_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown version 'grounding'.*chat_old"):
        load_tokenizer(None, "grounding")
    with pytest.raises(UserError, match="no such tokenizer"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(UserError, match="no tokenizer.model"):
        LlamaTokenizerAdapter(tmp_path)
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a SentencePiece model"):
        load_tokenizer(bad)
    folder = tmp_path / "vicuna"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(b"garbage")
    with pytest.raises(UserError, match="tokenizer.model: not a SentencePiece model"):
        load_tokenizer(folder)


def test_tokenizer_for_config() -> None:
    tiny = json.loads(TINY_CONFIGS[0].read_text())
    assert tokenizer_for_config(tiny, None, "vqa").signal_type == "vqa"
    full = json.loads((CONFIG_ROOT / "full" / "cogvlm-chat-v1.1" / "model_config.json").read_text())
    with pytest.raises(UserError, match="pass --tokenizer DIR"):
        tokenizer_for_config(full, None, "chat")
    with pytest.raises(UserError, match="2048 ids but the model's vocab_size is 1000"):
        tokenizer_for_config({**tiny, "vocab_size": 1000}, None, "chat")


def test_transformers_llama_tokenizer_path(tmp_path: Path, tok: SentencePieceTokenizer) -> None:
    """A vicuna-style directory (``tokenizer.model``) goes through transformers' LlamaTokenizer,
    offline; the tiny model stands in for vicuna's."""
    pytest.importorskip("transformers", reason="transformers is needed for real tokenizer directories")
    shutil.copy(TINY_TOKENIZER, tmp_path / "tokenizer.model")
    # The settings of vicuna-7b-v1.5's tokenizer_config.json that matter here.
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None}))
    hf = load_tokenizer(tmp_path, "chat_old")
    assert isinstance(hf, LlamaTokenizerAdapter)
    assert (hf.unk_token_id, hf.bos_token_id, hf.eos_token_id) == (0, 1, 2)
    assert hf.vocab_size == 2048
    text = "Question: Where is the blue circle? Answer: [[560,140,880,460]] 在右边"
    ids = hf.encode(text)
    assert hf.decode(ids) == text
    assert hf.encode(text, add_special_tokens=True)[0] == 1
    assert "<unk>" in hf.decode([0, *ids])  # image slots decode as <unk>, which base's separator needs
    # Pieces keep SentencePiece's word-start mark, as the token layout shows them.
    assert hf.pieces(ids) == tok.pieces(ids) and any(p.startswith("▁") for p in hf.pieces(ids))
