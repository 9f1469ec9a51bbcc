"""Shared test helpers: CogVLM forward inputs (from the CogVLM adapter) and golden-file options.

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
    """Keyword arguments for one CogVLM context forward: ``model(**tiny_forward_inputs(args))``,
    from the adapter's one builder (layout in :meth:`tracer.cogvlm.adapter.CogVLMAdapter.forward_inputs`);
    text ids and the image are random but fixed by ``seed``."""
    from tracer.cogvlm.adapter import ADAPTER

    return ADAPTER.forward_inputs(args, text_tokens=text_len, seed=seed)


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
