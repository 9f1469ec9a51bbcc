"""CogVLM on SwissArmyTransformer: model, mixins, configs, inputs, chat, grounding, checkpoints.

The first model adapter (registered in :mod:`tracer.adapters`): ``adapter.py`` answers the
core's questions, ``views.py`` draws CogVLM's own pictures. Submodules import torch and SAT;
this package itself does not, so the CLI can name files here cheaply — ``CogVLMModel`` and
``build_model`` are imported on first use::

    from tracer.cogvlm import CogVLMModel, build_model
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_QUERY", "SAMPLE_IMAGE", "CogVLMModel", "build_model"]

# The picture every default run talks about (cogtrace chat/report, walkthroughs, scripts).
SAMPLE_IMAGE = Path(__file__).parent / "assets" / "sample.png"
# The question every default run asks about it: the sample holds a red square, a blue circle and a
# green triangle, so it is one a trained grounding model can answer with a box.
DEFAULT_QUERY = "Where is the red square in the image? Answer with coordinates."

_LAZY = {"CogVLMModel": ".model", "build_model": ".build"}


def __getattr__(name: str) -> Any:
    """``from tracer.cogvlm import CogVLMModel`` without importing torch at package import."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
