"""The dataset SAT's ``training_main`` reads: one item per (image, question, answer) turn.

Upstream's ``ItemDataset`` (``utils/utils/dataset.py``) reads a folder of ``.jpg`` files; ours
reads the CogVLM-SFT-311K layout (``images/`` + ``labels/``, see :mod:`tracer.finetune.data`),
checked completely when it is created, so a broken folder fails before the first step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from ..cogvlm.image_processor import ImageProcessor
from .data import load_split
from .text import TrainingTextProcessor

__all__ = ["ItemDataset"]


class ItemDataset(Dataset[dict[str, Any]]):
    def __init__(self, image_processor: ImageProcessor, text_processor: TrainingTextProcessor,
                 data_dir: str | Path) -> None:
        super().__init__()
        self.image_processor, self.text_processor = image_processor, text_processor
        self.turns = [(item.image, query, answer) for item in load_split(data_dir) for query, answer in item.turns]
        for _, query, answer in self.turns:  # every sample must fit --max-length: fail now, not mid-run
            text_processor(answer, query)

    def __len__(self) -> int:
        return len(self.turns)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, query, answer = self.turns[index]
        with Image.open(path) as im:
            image = im.convert("RGB")
        return {"vision": self.image_processor(image), **self.text_processor(answer, query)}
