"""cogvlm-tracer: see how CogVLM is put together and runs on SwissArmyTransformer (SAT).

The one entry point for recording is :func:`trace`::

    import tracer
    with tracer.trace("out/") as t:       # out/trace.json (chrome=True adds trace.chrome.json)
        ...                               # build, load, run, generate
    t.trace                               # the tracer.Trace (pure data)

The package never imports torch or SAT at import time, so ``cogtrace --help`` stays fast:
:mod:`tracer.sink`, :mod:`tracer.session` and :mod:`tracer.schema` are standard-library only, and the patches
(:mod:`tracer.construction`, :mod:`tracer.runtime`) are imported when a recording starts.
The CogVLM model lives in :mod:`tracer.cogvlm`.
"""

from ._version import __version__
from .schema import Trace
from .session import TraceHandle, TracingError, trace

__all__ = ["Trace", "TraceHandle", "TracingError", "__version__", "trace"]
