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

__all__ = ["DEFAULT_QUERY", "SAMPLE_IMAGE", "SHAPES_IMAGE", "SHAPES_QUERY", "TRAINED_NAME", "CogVLMModel",
           "build_model", "default_image", "default_query"]

# The picture every default run talks about (cogtrace chat/report, walkthroughs, scripts).
SAMPLE_IMAGE = Path(__file__).parent / "assets" / "sample.png"
# The question every default run asks about it: the sample holds a red square, a blue circle and a
# green triangle, so it is one a trained grounding model can answer with a box.
DEFAULT_QUERY = "Where is the red square in the image? Answer with coordinates."

# The trained tiny model (configs/tiny/cogvlm-grounding-trained, `make train-tiny`) knows scenes of
# coloured shapes, not photographs: its default picture is one of them (held out from training),
# and the default question asks for the box of the object in it.
TRAINED_NAME = "cogvlm-grounding-trained"
SHAPES_IMAGE = Path(__file__).parent / "assets" / "shapes.jpg"
SHAPES_QUERY = "Where is the purple circle in the image? Give its bounding box as [[x0,y0,x1,y1]]."


def default_image(config_name: str) -> Path:
    """The picture a command talks about when none is given: the shapes scene for the trained model."""
    return SHAPES_IMAGE if config_name == TRAINED_NAME else SAMPLE_IMAGE


def default_query(config_name: str) -> str:
    """The question that fits :func:`default_image` of the same config."""
    return SHAPES_QUERY if config_name == TRAINED_NAME else DEFAULT_QUERY


_LAZY = {"CogVLMModel": ".model", "build_model": ".build"}


def __getattr__(name: str) -> Any:
    """``from tracer.cogvlm import CogVLMModel`` without importing torch at package import."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
