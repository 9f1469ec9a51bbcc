"""CogVLM on SwissArmyTransformer: model, mixins, configs, inputs, chat, grounding, checkpoints.

Submodules import torch and SAT; this package itself does not, so the CLI can name files here cheaply.
"""

from pathlib import Path

__all__ = ["SAMPLE_IMAGE", "SHAPES_IMAGE", "SHAPES_QUERY", "TRAINED_NAME", "default_image"]

# The picture every default run talks about (cogtrace chat/report, walkthroughs, scripts).
SAMPLE_IMAGE = Path(__file__).parent / "assets" / "sample.png"

# The trained tiny model (configs/tiny/cogvlm-grounding-trained, `make train-tiny`) knows scenes of
# coloured shapes, not photographs: its default picture is one of them (held out from training),
# and the default question of `cogtrace report` asks for the box of the object in it.
TRAINED_NAME = "cogvlm-grounding-trained"
SHAPES_IMAGE = Path(__file__).parent / "assets" / "shapes.jpg"
SHAPES_QUERY = "Where is the purple circle in the image? Give its bounding box as [[x0,y0,x1,y1]]."


def default_image(config_name: str) -> Path:
    """The picture a command talks about when none is given: the shapes scene for the trained model."""
    return SHAPES_IMAGE if config_name == TRAINED_NAME else SAMPLE_IMAGE
