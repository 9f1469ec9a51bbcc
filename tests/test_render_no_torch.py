"""Renderers must not import torch or SAT: a saved trace renders on any machine, quickly."""

from __future__ import annotations

import json
import subprocess
import sys

from fixtures.render_support import TRACES

MODULES = ["render.architecture", "render.calls", "render.common", "render.diagrams", "files", "render.fonts", "render.hooks",
           "render.modules", "render.registry", "render.report", "render.steps", "render.terminal", "adapters",
           "cogvlm.architecture", "cogvlm.tokens", "cogvlm.views"]


def test_render_modules_and_command_import_no_torch() -> None:
    code = f"""
import importlib, json, sys
for name in {MODULES!r}:
    importlib.import_module("tracer." + name)
import tracer.commands.render as cmd
trace = cmd.load_trace({str(TRACES["real"])!r})
for fmt in ("tree", "modules", "hooks", "steps", "tokens", "dot", "chrome"):
    cmd.render(trace, fmt)
from tracer.render.registry import views_for
from tracer.render.report import render_html
for view in views_for(trace).values():   # every registered view of a CogVLM trace, no torch
    if view.text:
        view.render_text(trace)
    if view.dot:
        view.dot(trace)
    if view.png:
        view.png(trace)
render_html(trace)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "sat", "deepspeed", "transformers"))))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
