"""Tokenizers for CogVLM's text side: the shipped tiny SentencePiece model, or vicuna's.

Upstream CogVLM loads ``lmsys/vicuna-7b-v1.5`` with ``transformers.LlamaTokenizer`` and hangs
four attributes on it (``llama2_tokenizer`` in ``utils/utils/language.py``): a pad id
(32000 when the tokenizer has none), ``boi``/``eoi`` strings ``[IMG]``/``[/IMG]`` and the
``signal_type`` that picks the prompt template. The rest of the pipeline only needs:

* ``encode(text, add_special_tokens=False) -> list[int]`` and ``decode(ids) -> str``;
* ``bos_token_id`` (1), ``eos_token_id`` (2, the end token for sampling), ``pad_token_id``,
  ``unk_token_id`` (0 — also the placeholder id of every image position);
* ``signal_type``, ``boi``, ``eoi``.

:class:`Tokenizer` is that interface. :class:`SentencePieceTokenizer` implements it on the
tiny model that ``scripts/build_tiny_tokenizer.py`` trains (vocab 2048, Llama's special ids,
pad 3); :class:`LlamaTokenizerAdapter` on a real tokenizer directory through transformers.
:func:`load_tokenizer` picks one.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = [
    "DEFAULT_VERSIONS",
    "TINY_TOKENIZER",
    "TINY_TOKENIZER_TYPE",
    "VERSIONS",
    "LlamaTokenizerAdapter",
    "SentencePieceTokenizer",
    "Tokenizer",
    "check_version",
    "choose_version",
    "load_tokenizer",
    "tokenizer_for_config",
]

TINY_TOKENIZER = Path(__file__).parent / "assets" / "tiny_tokenizer.model"
TINY_TOKENIZER_TYPE = "tiny-llama-sp"  # the tokenizer_type the tiny configs declare
# Prompt templates (signal types) upstream knows; see text_processor.py.
VERSIONS = ("base", "chat", "vqa", "chat_old")
# Upstream's fallback when the tokenizer has no pad token (vicuna has none): one past the vocab.
UPSTREAM_PAD_FALLBACK = 32000


def check_version(version: str) -> str:
    """Upstream asserts; we name the bad value and the allowed ones."""
    if version not in VERSIONS:
        raise UserError(f"unknown version {version!r}: expected one of {', '.join(VERSIONS)}")
    return version


# Upstream README's "Which --version to use" table, for when neither --version nor the
# config's text_processor_version says.
DEFAULT_VERSIONS = {
    "cogvlm-chat-v1.1": "chat_old",
    "cogvlm-chat": "chat_old",
    "cogvlm-grounding-generalist": "base",
    "cogvlm-base-224": "base",
    "cogvlm-base-490": "base",
}


def choose_version(requested: str | None, values: dict[str, Any], name: str) -> str:
    """The prompt template: the config's ``text_processor_version``, else ``requested``, else
    upstream's choice for the checkpoint ``name`` (its README's table), else ``chat``."""
    if requested is not None:
        check_version(requested)
    configured = values.get("text_processor_version")
    if configured is not None:
        # Upstream lets the checkpoint's setting win over --version; so do we, saying so.
        if requested is not None and requested != configured:
            print(f"note: {name} sets text_processor_version={configured!r}; using it instead of --version "
                  f"{requested}", file=sys.stderr)
        return check_version(str(configured))
    return requested or DEFAULT_VERSIONS.get(name, "chat")


class Tokenizer(abc.ABC):
    """What CogVLM's text processor and ``chat()`` need from a tokenizer."""

    boi = "[IMG]"  # upstream's markers; kept for parity, the prompt itself uses <EOI>
    eoi = "[/IMG]"
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    unk_token_id: int

    def __init__(self, signal_type: str = "chat") -> None:
        self.signal_type = check_version(signal_type)

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids; the model's ``vocab_size`` must be at least this."""

    @abc.abstractmethod
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``; with ``add_special_tokens`` a BOS id first (Llama's rule)."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special ids appear as ``<unk>``, ``<s>``, ``</s>`` (as in transformers),
        which is what upstream's separator ``<unk>`` and ``process_response`` rely on."""

    @abc.abstractmethod
    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary piece of each id (``▁Where``): how the text was split."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, signal_type={self.signal_type!r}, "
                f"bos={self.bos_token_id}, eos={self.eos_token_id}, pad={self.pad_token_id})")


# ---------------------------------------------------------------------------------------------
# The tiny SentencePiece model, used directly


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model file used through ``sentencepiece`` itself (no transformers)."""

    def __init__(self, model_file: str | Path = TINY_TOKENIZER, signal_type: str = "chat") -> None:
        super().__init__(signal_type)
        import sentencepiece as spm

        path = Path(model_file)
        if not path.is_file():
            raise UserError(f"{path}: no such tokenizer model file")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as e:
            raise UserError(f"{path}: not a SentencePiece model ({e})") from e
        self.path = path
        self.unk_token_id = self.sp.unk_id()
        self.bos_token_id = self.sp.bos_id()
        self.eos_token_id = self.sp.eos_id()
        pad = self.sp.pad_id()
        self.pad_token_id = pad if pad >= 0 else UPSTREAM_PAD_FALLBACK
        # ids decode() renders as their piece text instead of letting sentencepiece drop them
        self._special = {i: self.sp.id_to_piece(i) for i in (self.unk_token_id, self.bos_token_id,
                                                               self.eos_token_id, pad) if i >= 0}

    @property
    def vocab_size(self) -> int:
        return int(self.sp.vocab_size())

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = list(self.sp.encode(text))
        return [self.bos_token_id, *ids] if add_special_tokens else ids

    def decode(self, ids: Sequence[int]) -> str:
        parts: list[str] = []
        run: list[int] = []
        for token in (int(i) for i in ids):
            if not 0 <= token < self.vocab_size:
                raise ValueError(f"token id {token} out of range for vocab_size {self.vocab_size}")
            if token in self._special:
                parts.append(self.sp.decode(run))
                parts.append(self._special[token])
                run = []
            else:
                run.append(token)
        parts.append(self.sp.decode(run))
        return "".join(parts)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [str(self.sp.id_to_piece(int(i))) for i in ids]


# ---------------------------------------------------------------------------------------------
# A real (vicuna-7b-v1.5) tokenizer directory, through transformers


class LlamaTokenizerAdapter(Tokenizer):
    """``transformers.LlamaTokenizer`` from a local directory, as upstream's ``llama2_tokenizer``."""

    def __init__(self, directory: str | Path, signal_type: str = "chat") -> None:
        super().__init__(signal_type)
        path = Path(directory)
        if not path.is_dir():
            raise UserError(f"{path}: no such tokenizer directory (expected e.g. a vicuna-7b-v1.5 download)")
        if not any((path / name).is_file() for name in ("tokenizer.model", "tokenizer.json")):
            raise UserError(f"{path}: no tokenizer.model or tokenizer.json in this directory")
        model_file = path / "tokenizer.model"
        if model_file.is_file():
            # Check it ourselves first: transformers would log a long fallback story, then fail.
            import sentencepiece as spm

            try:
                spm.SentencePieceProcessor(model_file=str(model_file))
            except (OSError, RuntimeError) as e:
                raise UserError(f"{model_file}: not a SentencePiece model ({e})") from e
        from transformers import LlamaTokenizer

        try:
            # local_files_only: a path must never turn into a download attempt.
            self.hf: Any = LlamaTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as e:  # a third-party loader: OSError, ValueError, parser errors ...
            raise UserError(f"{path}: transformers cannot load this tokenizer ({e.__class__.__name__}: {e})") from e
        self.path = path
        self.unk_token_id = int(self.hf.unk_token_id)
        self.bos_token_id = int(self.hf.bos_token_id)
        self.eos_token_id = int(self.hf.eos_token_id)
        pad = self.hf.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else UPSTREAM_PAD_FALLBACK

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.hf.decode([int(i) for i in ids]))

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [str(p) for p in self.hf.convert_ids_to_tokens([int(i) for i in ids])]


# ---------------------------------------------------------------------------------------------
# Choosing one


def load_tokenizer(path: str | Path | None = None, signal_type: str = "chat") -> Tokenizer:
    """``None`` -> the shipped tiny model; a ``.model`` file -> SentencePiece; a directory ->
    transformers' ``LlamaTokenizer`` (the upstream path for ``vicuna-7b-v1.5``)."""
    if path is None:
        return SentencePieceTokenizer(TINY_TOKENIZER, signal_type)
    path = Path(path)
    if path.is_file():
        return SentencePieceTokenizer(path, signal_type)
    if path.is_dir():
        return LlamaTokenizerAdapter(path, signal_type)
    raise UserError(f"{path}: no such tokenizer (expected a directory such as vicuna-7b-v1.5 or a .model file)")


def tokenizer_for_config(values: dict[str, Any], path: str | Path | None, signal_type: str) -> Tokenizer:
    """The tokenizer a model config needs; refuse one whose ids the model cannot embed.

    Tiny configs declare ``tokenizer_type: tiny-llama-sp`` and get the shipped model unless
    ``path`` says otherwise; the full configs (``vicuna-7b-v1.5``) need ``path``.
    """
    kind = values.get("tokenizer_type", "")
    if path is None and kind != TINY_TOKENIZER_TYPE:
        raise UserError(f"this model uses the {kind or 'vicuna-7b-v1.5'} tokenizer: pass --tokenizer DIR "
                        f"(a local vicuna-7b-v1.5 download)")
    tokenizer = load_tokenizer(path, signal_type)
    vocab = int(values.get("vocab_size", 0))
    if tokenizer.vocab_size > vocab:
        raise UserError(f"tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is {vocab}: "
                        f"expected a tokenizer with at most {vocab} ids")
    return tokenizer
