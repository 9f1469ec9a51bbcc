"""Shared test helpers: CogVLM forward inputs built from the sequence rules in DESIGN.md §3.

Every test runs with ``COGTRACE_CACHE`` pointed at a temporary folder, so no test reads or
writes the user's ``~/.cache``.
"""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
import sat.helpers  # noqa: F401 - see below
import torch

# SAT's logger gets a StreamHandler on the sys.stderr of the moment SAT is first imported. If
# that happens inside a test using capsys, the handler keeps that test's capture stream, which
# is closed afterwards ("I/O operation on closed file" in every later test). Importing SAT here,
# at collection, binds it to pytest's session-wide stream whatever order tests run in.


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache root per test session (generated tiny checkpoints are reused across tests)."""
    root = tmp_path_factory.getbasetemp() / "cogtrace-cache"
    monkeypatch.setenv("COGTRACE_CACHE", str(root))
    return root


def tiny_forward_inputs(args: argparse.Namespace, text_len: int = 5, *, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments for one CogVLM context forward: ``model(**tiny_forward_inputs(args))``.

    Layout (DESIGN.md §3), with L = ``args.image_length``::

        index:  0      1      2 .. L+1        L+2     L+3 .. L+2+text_len
        token:  [BOS]  [boi]  L image slots   [eoi]   text

    * ``image_embed_mask``  = 1 on boi..eoi (L+2): rows replaced by the vision tower's output;
    * ``vision_expert_mask`` = 1 on boi..last image slot (L+1): rows using the vision experts;
    * ``image_rope_mask``   = 1 on the L image slots, which share one rotary position id;
    * ``position_ids``: BOS 0, boi 1, every image slot 2, eoi 3, text 4, 5, ...

    The image slots and boi/eoi hold token id 0 (their embeddings are overwritten), as in
    upstream's text processor. Text ids and the image are random but fixed by ``seed``.
    """
    L = int(args.image_length)
    seq_len = 1 + (L + 2) + text_len
    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(3, int(args.vocab_size), (text_len,), generator=gen)
    input_ids = torch.cat([torch.tensor([int(args.bos_token_id)]), torch.zeros(L + 2, dtype=torch.long), text])

    image_embed_mask = torch.zeros(seq_len, dtype=torch.long)
    image_embed_mask[1:L + 3] = 1
    vision_expert_mask = torch.zeros(seq_len, dtype=torch.long)
    vision_expert_mask[1:L + 2] = 1
    image_rope_mask = torch.zeros(seq_len, dtype=torch.long)
    image_rope_mask[2:L + 2] = 1
    position_ids = torch.cat([torch.tensor([0, 1]), torch.full((L,), 2), torch.arange(3, 3 + 1 + text_len)])

    height, width = args.eva_args["image_size"]
    image = torch.randn(1, 3, height, width, generator=gen)
    attention_mask = torch.ones(1, 1, seq_len, seq_len).tril_()  # causal, (1, 1, S, S)
    return {
        "input_ids": input_ids.unsqueeze(0),  # (1, S)
        "position_ids": position_ids.unsqueeze(0),  # (1, S)
        "attention_mask": attention_mask,
        "image_embed_mask": image_embed_mask.unsqueeze(0),
        "vision_expert_mask": vision_expert_mask.unsqueeze(0),
        "image_rope_mask": image_rope_mask.unsqueeze(0),
        # The vision tower's own inputs, as upstream's image processor returns them.
        "vision_image": image,  # (1, 3, H, W)
        "vision_input_ids": torch.zeros(1, 1, dtype=torch.long),
        "vision_position_ids": None,
        "vision_attention_mask": torch.ones(1, 1, dtype=torch.long),
    }


# ---- begin: render golden files (owned by the views issue; tests/test_render_*.py) ----------
def pytest_addoption(parser: pytest.Parser) -> None:
    """``pytest --overwrite-golden`` rewrites tests/golden/* from the current renderers."""
    parser.addoption("--overwrite-golden", action="store_true", default=False,
                     help="regenerate the golden files under tests/golden/ instead of comparing with them")
# ---- end: render golden files ------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` with almost no pixel data: a bomb, as open() sees it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
