"""cogvlm-tracer's benchmark harness (issue 7): ``make bench`` or ``python -m bench``.

It answers, with numbers measured in one run on this machine, four questions:

1. **cost** (:mod:`bench.cost`) — what does tracing add to the tiny pipeline (build + one
   chat turn)? Untraced, construction tracing and full runtime tracing, interleaved.
2. **fullsize** (:mod:`bench.fullsize`) — how long and how much memory do the full-size meta
   build (17.6B), the article's 2-layer variant and the full-width shape trace take?
3. **peers** (:mod:`bench.peers`) — what do torchinfo, torchview, torchlens and viztracer
   see of the same model and input, at what cost? Counted from their own outputs.
4. **scaling** (:mod:`bench.scaling`) — how trace size and time grow with generated tokens
   and with the number of layers.
5. **profile** (:mod:`bench.profile`) — where the time goes when a target is missed (and,
   with ``--profile`` as ``make bench`` passes it, for the two tracing modes anyway).

Every measurement runs in a fresh Python process (:mod:`bench.worker`), so one tool's
global patches (torchlens wraps torch's functions, viztracer installs a profiler) cannot
leak into another's numbers. :mod:`bench.report` turns the results into
``docs/benchmarks.md`` and :mod:`bench.plot` draws ``docs/benchmarks-scaling.png``.
"""
