"""CogVLM on SwissArmyTransformer: model, mixins, configs, inputs, chat, grounding, checkpoints.

Submodules import torch and SAT; this package itself does not, so the CLI can name files here cheaply.
"""

from pathlib import Path

__all__ = ["SAMPLE_IMAGE"]

# The picture every default run talks about (cogtrace chat/report, walkthroughs, scripts).
SAMPLE_IMAGE = Path(__file__).parent / "assets" / "sample.png"
