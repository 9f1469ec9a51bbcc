"""Golden-file tests of the terminal views (tree, modules, hooks, steps, tokens).

Both stored traces (synthetic and real, see tests/fixtures/render_support.py) are rendered
without timings at a fixed width and compared with tests/golden/; ``pytest
--overwrite-golden`` regenerates them after an intended change.
"""

from __future__ import annotations

import pytest
from fixtures.render_support import check_golden, load, normalise

from tracer.cogvlm.tokens import render_layout_text
from tracer.render.calls import call_tree, render_calls
from tracer.render.hooks import hook_rows, mixin_changes, render_hooks
from tracer.render.modules import render_modules
from tracer.render.steps import render_steps, step_rows

KINDS = ("synthetic", "real")


@pytest.mark.parametrize("kind", KINDS)
def test_call_tree_golden(request: pytest.FixtureRequest, kind: str) -> None:
    check_golden(request, f"{kind}.tree.txt", render_calls(load(kind), width=140, timings=False))


@pytest.mark.parametrize("kind", KINDS)
def test_module_tree_golden(request: pytest.FixtureRequest, kind: str) -> None:
    check_golden(request, f"{kind}.modules.txt", render_modules(load(kind), width=140))


@pytest.mark.parametrize("kind", KINDS)
def test_hooks_golden(request: pytest.FixtureRequest, kind: str) -> None:
    check_golden(request, f"{kind}.hooks.txt", render_hooks(load(kind), width=140))


@pytest.mark.parametrize("kind", KINDS)
def test_steps_golden(request: pytest.FixtureRequest, kind: str) -> None:
    check_golden(request, f"{kind}.steps.txt", render_steps(load(kind), width=140, timings=False))


@pytest.mark.parametrize("kind", KINDS)
def test_tokens_golden(request: pytest.FixtureRequest, kind: str) -> None:
    check_golden(request, f"{kind}.tokens.txt", render_layout_text(load(kind), width=140))


@pytest.mark.parametrize("kind", KINDS)
def test_article_mixin_order(kind: str) -> None:
    """The article's section 2: eva added, then mlp and rotary each deleted and re-added."""
    calls = [c.call for c in mixin_changes(load(kind)) if c.model == "CogVLMModel"]
    eva = calls.index("add_mixin('eva', ImageMixin)")
    assert calls[:3] == ["add_mixin('rotary', RotaryMixin)", "add_mixin('lm', LMMixin)",
                         "add_mixin('mlp', LLaMAMlpMixin)"]  # LLaMAModel.__init__
    assert calls[eva + 1:eva + 5] == ["del_mixin('mlp')", "add_mixin('mlp', LlamaVisionExpertFCMixin)",
                        "del_mixin('rotary')", "add_mixin('rotary', LlamaVisionExpertAttnMixin)"]


@pytest.mark.parametrize("kind", KINDS)
def test_final_hook_table_served_by_mixins(kind: str) -> None:
    rows = {r.hook: r for r in hook_rows(load(kind)) if r.model_path == ""}
    assert rows["attention_forward"].origin == "rotary"
    assert rows["mlp_forward"].origin == "mlp"
    assert rows["word_embedding_forward"].origin == "eva"
    assert rows["final_forward"].origin == "lm"
    assert rows["cross_attention_forward"].origin == "default"
    # every layer's mlp_forward ran once per step (context + cached steps)
    steps = len(step_rows(load(kind)))
    assert rows["mlp_forward"].dispatches == 2 * steps and rows["mlp_forward"].layers == "0–1"


@pytest.mark.parametrize("kind", KINDS)
def test_steps_show_kv_cache_growing(kind: str) -> None:
    rows = step_rows(load(kind))
    assert rows[0].phase == "context" and rows[0].mems == "none" and rows[0].vision_tokens == 1226
    for i, r in enumerate(rows[1:], start=1):
        assert r.phase == "step" and r.tokens_fed == 1 and r.vision_tokens == 0
        assert r.mems.startswith("[2, 1, ") and int(r.mems.split(", ")[2]) == rows[0].tokens_fed + i - 1


def test_call_tree_numbering_is_call_order() -> None:
    forest = call_tree(load("synthetic"))
    orders: list[int] = []

    def walk(node) -> None:  # type: ignore[no-untyped-def]
        orders.append(node.order)
        for child in node.children:
            walk(child)

    for node in forest:
        walk(node)
    assert orders == list(range(1, len(orders) + 1))


def test_timings_on_by_default_and_normalised() -> None:
    text = render_calls(load("real"))
    assert " ms" in text or " s " in text
    assert " ms" not in normalise(text)
