"""Summary steps: generation steps beyond ``max_steps`` are recorded as the step event alone,
with the global module hooks lifted while they run — same tokens, nothing left behind.

SAT's ``filling_sequence`` is driven directly with a strategy that looks at torch's hook
tables every time it is asked for a token, so the tests see when the hooks were lifted.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

import pytest
import torch
from sat.generation.autoregressive_sampling import filling_sequence, stream_filling_sequence
from sat.generation.sampling_strategies import BaseStrategy
from torch.nn.modules import module as torch_module

import tracer
from tracer.schema import DEFAULT_MAX_STEPS, Trace

CONFIG = "configs/tiny/cogvlm-grounding-generalist"
NEW_TOKENS = 7


class ProbeStrategy(BaseStrategy):
    """Greedy, no end token; notes (global pre-hooks, the model's own pre-hooks) per token and
    can raise at a given call."""

    def __init__(self, model: torch.nn.Module, fail_at: int | None = None) -> None:
        super().__init__(top_k=1, end_tokens=[])
        self.model, self.fail_at = model, fail_at
        self.seen: list[tuple[int, int]] = []

    def forward(self, logits: torch.Tensor, tokens: torch.Tensor, mems: Any, temperature: float | None = None) -> Any:
        self.seen.append((len(torch_module._global_forward_pre_hooks), len(self.model._forward_pre_hooks)))
        if self.fail_at is not None and len(self.seen) == self.fail_at:
            raise RuntimeError("strategy failed on purpose")
        return super().forward(logits, tokens, mems, temperature)


@pytest.fixture(scope="module")
def pipeline() -> tuple[torch.nn.Module, dict[str, Any]]:
    from tracer.cogvlm.adapter import ADAPTER
    from tracer.cogvlm.chat import add_autoregressive_mixin
    from tracer.cogvlm.checkpoint import load_model
    from tracer.cogvlm.config import load_config

    model, _ = load_model(CONFIG, device="cpu")
    add_autoregressive_mixin(model)
    inputs = ADAPTER.prompt_inputs(load_config(CONFIG), "Where is the cake?", max_length=2048)
    del inputs["attention_mask"], inputs["position_ids"]  # filling_sequence makes its own
    return model.eval(), inputs


def _generate(pipeline: tuple[torch.nn.Module, dict[str, Any]], strategy: BaseStrategy,
              stream: bool = False, between: Any = None) -> list[int]:
    from tracer.cogvlm.text_processor import masks_and_position_ids

    model, inputs = pipeline
    kwargs = dict(inputs)
    input_ids = kwargs.pop("input_ids")[0]
    seq = torch.cat([input_ids, torch.full((NEW_TOKENS,), -1, dtype=input_ids.dtype)])
    get_func = lambda s: masks_and_position_ids(s, image_rope_mask=kwargs["image_rope_mask"])  # noqa: E731
    with torch.no_grad():
        if not stream:
            out = filling_sequence(model, seq, batch_size=1, strategy=strategy, get_masks_and_position_ids=get_func,
                                   **kwargs)[0]
        else:
            out = None
            for item in stream_filling_sequence(model, seq, batch_size=1, strategy=strategy,
                                                get_masks_and_position_ids=get_func, **kwargs):
                out = item[0]  # the tokens so far
                if between is not None:
                    between()
    return [int(t) for t in out[0, len(input_ids):]]


def _no_hooks_left(model: torch.nn.Module) -> None:
    assert not torch_module._global_forward_pre_hooks and not torch_module._global_forward_hooks
    assert not torch_module._global_forward_hooks_with_kwargs
    for m in model.modules():
        assert not m._forward_pre_hooks and not m._forward_hooks, type(m).__name__


def _steps(trace: Trace) -> list[Any]:
    return [e for e in trace.of("generation") if e.data["phase"] != "call"]


def test_default_records_a_few_steps_in_full() -> None:
    assert tracer.trace().recorder.max_steps == DEFAULT_MAX_STEPS


def test_summary_steps_lift_the_hooks_and_keep_the_tokens(pipeline: Any) -> None:
    model = pipeline[0]
    untraced = _generate(pipeline, ProbeStrategy(model))
    probe = ProbeStrategy(model)
    with tracer.trace(max_steps=2) as handle:
        traced = _generate(pipeline, probe)
    assert traced == untraced
    # After the forwards of context, step 1 and step 2 the global pair is installed; from the end
    # of step 2 on, only the root model's own pair watches.
    assert probe.seen == [(1, 0), (1, 0)] + [(0, 1)] * (NEW_TOKENS - 2)
    _no_hooks_left(model)
    trace = handle.trace
    assert trace is not None
    steps = _steps(trace)
    assert [s.data["detail"] for s in steps] == ["full"] * 3 + ["summary"] * (NEW_TOKENS - 3)
    assert [s.data["sampled_token"] for s in steps] == untraced
    context = steps[0].data["tokens_fed"]
    for s in steps[3:]:
        n = s.data["step"]
        assert s.data["tokens_fed"] == 1 and s.data["sequence_length"] == context + n
        assert s.data["mems"]["shape"][2] == context + n - 1  # the cache grows by one per step
        assert s.duration_ns > 0 and not any(e.parent == s.id for e in trace.events)
    call = next(e for e in trace.of("generation") if e.data["phase"] == "call")
    assert call.data["steps"] == NEW_TOKENS and call.data["recorded_steps"] == 3
    assert call.data["sampled_tokens"] == untraced
    # Full steps hold the model's forward with its hooks; the root's forward is recorded 3 times.
    assert sum(1 for e in trace.of("module") if e.data["path"] == "") == 3


def test_every_step_in_full_with_none(pipeline: Any) -> None:
    model = pipeline[0]
    probe = ProbeStrategy(model)
    with tracer.trace(max_steps=None) as handle:
        _generate(pipeline, probe)
    assert probe.seen == [(1, 0)] * NEW_TOKENS
    assert handle.trace is not None
    assert {s.data["detail"] for s in _steps(handle.trace)} == {"full"}
    _no_hooks_left(model)


def test_error_during_summary_steps_leaves_nothing(pipeline: Any) -> None:
    model = pipeline[0]
    with pytest.raises(RuntimeError, match="on purpose"):
        with tracer.trace(max_steps=0) as handle:
            _generate(pipeline, ProbeStrategy(model, fail_at=4))
    _no_hooks_left(model)
    trace = handle.trace
    assert trace is not None
    call = next(e for e in trace.of("generation") if e.data["phase"] == "call")
    assert call.error is not None and "on purpose" in call.error
    assert [s.data["detail"] for s in _steps(trace)] == ["full", "summary", "summary", "summary"]


def test_error_inside_a_summary_step_forward(pipeline: Any) -> None:
    """A forward that raises in a summary step closes that step with the error; the next trace
    records normally (no suppression or hook left over)."""
    model = pipeline[0]
    calls = {"n": 0}

    def fail_on_fourth(module: torch.nn.Module, args: tuple) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise ValueError("forward failed on purpose")

    own = model.transformer.final_layernorm.register_forward_pre_hook(fail_on_fourth)
    try:
        with pytest.raises(ValueError, match="on purpose"):
            with tracer.trace(max_steps=1) as handle:
                _generate(pipeline, ProbeStrategy(model))
    finally:
        own.remove()
    _no_hooks_left(model)
    assert handle.trace is not None
    failed = _steps(handle.trace)[-1]
    assert failed.name == "step 3" and failed.data["detail"] == "summary"
    assert failed.error is not None and "on purpose" in failed.error
    with tracer.trace(max_steps=1) as again:
        _generate(pipeline, ProbeStrategy(model))
    assert again.trace is not None
    assert [s.data["detail"] for s in _steps(again.trace)] == ["full", "full"] + ["summary"] * (NEW_TOKENS - 2)


def test_stream_is_traced_in_full_between_tokens(pipeline: Any) -> None:
    """A stream lifts the hooks only inside ``next()``: the caller's code between two tokens
    runs under the global pair and is recorded."""
    model = pipeline[0]
    probe = ProbeStrategy(model)
    layernorm = torch.nn.LayerNorm(4)
    seen_between: list[tuple[int, int]] = []

    def between() -> None:
        seen_between.append((len(torch_module._global_forward_pre_hooks), len(model._forward_pre_hooks)))
        layernorm(torch.zeros(1, 4))

    with tracer.trace(max_steps=1) as handle:
        tokens = _generate(pipeline, probe, stream=True, between=between)
    assert tokens == _generate(pipeline, ProbeStrategy(model))
    assert seen_between == [(1, 0)] * len(seen_between) and len(seen_between) >= NEW_TOKENS - 1
    assert (0, 1) in probe.seen  # summary steps did run lifted
    _no_hooks_left(model)
    trace = handle.trace
    assert trace is not None
    assert [s.data["detail"] for s in _steps(trace)][:3] == ["full", "full", "summary"]
    outside = [e for e in trace.of("module") if e.data["path"].startswith("<LayerNorm>")]
    assert len(outside) == len(seen_between)


def test_other_threads_are_not_recorded_while_lifted(pipeline: Any) -> None:
    """The root's pair answers only the tracing thread: a forward of the same model from another
    thread during summary steps adds no step."""
    model = pipeline[0]
    done = threading.Event()

    class Racing(ProbeStrategy):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            if len(self.seen) == 3 and not done.is_set():
                def other() -> None:
                    with torch.no_grad():
                        model(**{k: v for k, v in pipeline[1].items()}, **_masks(pipeline[1]))
                worker = threading.Thread(target=other)
                worker.start()
                worker.join()
                done.set()
            return super().forward(*args, **kwargs)

    with tracer.trace(max_steps=1) as handle:
        _generate(pipeline, Racing(model))
    assert done.is_set() and handle.trace is not None
    assert len(_steps(handle.trace)) == NEW_TOKENS
    _no_hooks_left(model)


def _masks(inputs: dict[str, Any]) -> dict[str, Any]:
    from tracer.cogvlm.text_processor import masks_and_position_ids

    _, mask, positions = masks_and_position_ids(inputs["input_ids"][0], inputs["image_rope_mask"])
    return {"attention_mask": mask, "position_ids": positions}


def test_steps_view_marks_summaries(pipeline: Any) -> None:
    from tracer.render.steps import render_steps

    with tracer.trace(max_steps=1) as handle:
        _generate(pipeline, ProbeStrategy(pipeline[0]))
    assert handle.trace is not None
    text = render_steps(handle.trace, timings=False)
    assert f"steps 2–{NEW_TOKENS - 1}: step summaries" in text and "--max-steps all" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    counts = {int(r[0]): r for r in rows}
    assert counts[1][-2:] != ["-", "-"] and counts[2][-2:] == ["-", "-"]


@pytest.mark.parametrize(("text", "expected"), [("all", None), ("ALL", None), ("0", 0), ("12", 12)])
def test_cli_max_steps(text: str, expected: int | None) -> None:
    from tracer.commands._tracing import trace_options

    args = argparse.Namespace(categories=None, depth=None, max_steps=text)
    assert trace_options(args)["max_steps"] == expected


@pytest.mark.parametrize("text", ["-1", "many", "1.5"])
def test_cli_max_steps_refused(text: str) -> None:
    from tracer.commands._tracing import trace_options
    from tracer.errors import UserError

    with pytest.raises(UserError, match=f"--max-steps {text}: expected a non-negative integer or 'all'"):
        trace_options(argparse.Namespace(categories=None, depth=None, max_steps=text))
