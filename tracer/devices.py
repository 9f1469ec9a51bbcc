"""Build any model on the meta device, even code that asks for ``device='cpu'`` explicitly.

``with torch.device('meta'):`` only fills in a device where the caller gave none. SAT's
``BaseModel`` builds its transformer with an explicit ``device=torch.device('cpu')`` and
upstream CogVLM's mixins do the same, so under that context a "meta" build still allocates
every weight on the CPU. The mode
below overrides the device of every tensor factory call, explicit or not, for the duration
of the block: shapes and dtypes are kept, no memory is used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

__all__ = ["ForceDevice"]


class ForceDevice(TorchFunctionMode):
    """Put every tensor created inside the block on ``device``.

    Example::

        with ForceDevice("meta"):
            model = get_model(args, CogVLMModel)   # 17.6B parameters, no memory
    """

    def __init__(self, device: str | torch.device = "meta") -> None:
        super().__init__()
        self.device = torch.device(device)
        self._constructors = _device_constructors()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in self._constructors:
            kwargs = {**(kwargs or {}), "device": self.device}
        return func(*args, **(kwargs or {}))
