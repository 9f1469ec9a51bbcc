"""cogvlm-tracer: see how CogVLM is put together and runs on SwissArmyTransformer (SAT).

The package never imports torch or SAT at import time, so ``cogtrace --help`` stays fast;
the CogVLM model lives in :mod:`tracer.cogvlm`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
