"""CogVLM on SwissArmyTransformer: model, mixins, configs, inputs, chat, grounding, checkpoints.

Submodules import torch and SAT; this package itself does not, so the CLI can name files here cheaply.
"""

from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_QUERY", "SAMPLE_IMAGE", "CogVLMModel"]

# The picture every default run talks about (cogtrace chat/report, walkthroughs, scripts).
SAMPLE_IMAGE = Path(__file__).parent / "assets" / "sample.png"
# The question every default run asks about it: the sample holds a red square, a blue circle and a
# green triangle, so it is one a trained grounding model can answer with a box.
DEFAULT_QUERY = "Where is the red square in the image? Answer with coordinates."


def __getattr__(name: str) -> Any:
    """``tracer.cogvlm.CogVLMModel``, imported on first use (it imports torch and SAT)."""
    if name == "CogVLMModel":
        from .model import CogVLMModel

        return CogVLMModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
