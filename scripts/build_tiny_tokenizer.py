#!/usr/bin/env python
"""Rebuild ``tracer/cogvlm/assets/tiny_tokenizer.model`` from ``tiny_corpus.txt``.

The tiny configs declare ``vocab_size`` 2048; this script trains a SentencePiece BPE model
of exactly that size, set up like Llama's (and so vicuna-7b-v1.5's) tokenizer: ids unk 0
``<unk>``, bos 1 ``<s>``, eos 2 ``</s>``, plus pad 3 ``<pad>``; byte fallback (any text
encodes, nothing becomes ``<unk>``); digits split one by one (grounding coordinates such
as ``[[086,540,400,760]]`` become single digits, as with Llama); identity normalisation and
whitespace kept as written, so ``" [/INST] "`` round-trips.

The output is byte-for-byte reproducible: one thread, no sentence sampling or shuffling,
and the corpus is fed through an iterator so that no file path ends up inside the model's
recorded trainer options. ``tests/test_tokenizer.py`` rebuilds it and compares bytes.

Usage::

    .venv/bin/python scripts/build_tiny_tokenizer.py            # rewrite the shipped model
    .venv/bin/python scripts/build_tiny_tokenizer.py --output /tmp/x.model
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "tracer" / "cogvlm" / "assets"
CORPUS = ASSETS / "tiny_corpus.txt"
MODEL = ASSETS / "tiny_tokenizer.model"
VOCAB_SIZE = 2048  # must equal vocab_size in configs/tiny/*/model_config.json

TRAINER_OPTIONS: dict[str, object] = dict(
    model_type="bpe",
    vocab_size=VOCAB_SIZE,
    character_coverage=1.0,  # keep every character of the corpus (incl. Chinese) as a piece
    byte_fallback=True,
    split_digits=True,
    normalization_rule_name="identity",
    remove_extra_whitespaces=False,
    add_dummy_prefix=True,
    allow_whitespace_only_pieces=True,
    unk_id=0, bos_id=1, eos_id=2, pad_id=3,
    unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", pad_piece="<pad>",
    # Determinism: no sampling, no shuffling, a single thread.
    input_sentence_size=0,
    shuffle_input_sentence=False,
    num_threads=1,
    max_sentence_length=4192,
    minloglevel=2,
)


def build_model_bytes(corpus: Path = CORPUS) -> bytes:
    """Train on ``corpus`` and return the serialised model (nothing written to disk)."""
    import sentencepiece as spm

    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    sink = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=sink, **TRAINER_OPTIONS)
    return sink.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--output", type=Path, default=MODEL)
    args = parser.parse_args()
    data = build_model_bytes(args.corpus)
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data):,} bytes, vocab {VOCAB_SIZE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
