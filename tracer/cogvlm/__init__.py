"""CogVLM on SwissArmyTransformer: model, mixins, configs, inputs, chat, grounding, checkpoints.

Submodules import torch and SAT; this package itself does not, so the CLI can name files here cheaply.
"""

from pathlib import Path

__all__ = ["DEFAULT_QUERY", "SAMPLE_IMAGE"]

# The picture every default run talks about (cogtrace chat/report, walkthroughs, scripts).
SAMPLE_IMAGE = Path(__file__).parent / "assets" / "sample.png"
# The question every default run asks about it: the sample holds a red square, a blue circle and a
# green triangle, so it is one a trained grounding model can answer with a box.
DEFAULT_QUERY = "Where is the red square in the image? Answer with coordinates."
