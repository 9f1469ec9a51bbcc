"""Runtime tracing: module shapes, which mixin served each SAT hook at every layer, vision-expert
branch facts, bit-identical outputs, and full-width shapes on meta that match a real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_forward_inputs

import tracer
from tracer.cogvlm.adapter import ADAPTER
from tracer.cogvlm.build import build_model
from tracer.schema import Trace
from tracer.shapes import MetaWithValues

CONFIG = "configs/tiny/cogvlm-grounding-generalist"


@pytest.fixture(scope="module")
def tiny() -> Any:
    return build_model(CONFIG)


@pytest.fixture(scope="module")
def forward(tiny: Any) -> tuple[Trace, dict[str, Any], torch.Tensor, torch.Tensor]:
    inputs = tiny_forward_inputs(tiny.args)
    with torch.no_grad():
        untraced = tiny.model(**inputs)[0]
        with tracer.trace() as handle:
            traced = tiny.model(**inputs)[0]
    assert handle.trace is not None
    return handle.trace, inputs, untraced, traced


def test_traced_forward_is_bit_identical(forward: Any) -> None:
    _, _, untraced, traced = forward
    assert torch.equal(untraced, traced)


def test_every_layer_served_by_the_article_mixins(forward: Any, tiny: Any) -> None:
    trace, inputs, _, _ = forward
    root = [e for e in trace.of("hook") if e.data["model_path"] == ""]
    served = {(e.name, e.data["layer_id"]): e.data["served_by"] for e in root}
    for layer in range(tiny.args.num_layers):
        assert served[("attention_forward", layer)] == "rotary"
        assert served[("mlp_forward", layer)] == "mlp"
        assert served[("layer_forward", layer)] == "default"
    assert served[("word_embedding_forward", None)] == "eva"
    assert served[("final_forward", None)] == "lm"
    assert served[("position_embedding_forward", None)] == "model"  # LLaMAModel's own method
    classes = {e.name: e.data["mixin_class"] for e in root}
    assert classes["mlp_forward"] == "LlamaVisionExpertFCMixin" and classes["word_embedding_forward"] == "ImageMixin"
    # The vision tower's own dispatches, under its own model path.
    eva = {(e.name, e.data["served_by"]) for e in trace.of("hook") if e.data["model_path"] == "mixins.eva.vit_model"}
    assert {("word_embedding_forward", "patch_embedding"), ("layer_forward", "newpost"),
            ("attention_forward", "default"), ("final_forward", "final")} <= eva


def test_hook_weights_layers_and_branch(forward: Any, tiny: Any) -> None:
    trace, inputs, _, _ = forward
    mlp0 = next(e for e in trace.of("hook") if e.name == "mlp_forward" and e.data["layer_id"] == 0
                and e.data["model_path"] == "")
    assert mlp0.data["layer_path"] == "transformer.layers.0.mlp"
    assert set(mlp0.data["weights"]) == {
        "mixins.mlp.gate_proj.0", "transformer.layers.0.mlp.dense_h_to_4h", "transformer.layers.0.mlp.dense_4h_to_h",
        "mixins.mlp.vision_dense_h_to_4h_list.0", "mixins.mlp.vision_gate_proj.0", "mixins.mlp.vision_dense_4h_to_h_list.0"}
    L, S = tiny.args.image_length, inputs["input_ids"].shape[1]
    assert mlp0.data["branch"] == {"vision_expert": True, "vision_tokens": L + 1, "language_tokens": S - L - 1}
    assert mlp0.data["inputs"][0]["shape"] == [1, S, tiny.args.hidden_size]
    attn1 = next(e for e in trace.of("hook") if e.name == "attention_forward" and e.data["layer_id"] == 1
                 and e.data["model_path"] == "")
    assert "mixins.rotary.vision_query_key_value_list.1" in attn1.data["weights"]
    # The expert split is visible in the module shapes: L+1 vision rows, the rest language rows.
    by_id = trace.by_id()
    children = {e.name: e for e in trace.events if e.parent == attn1.id}
    assert children["mixins.rotary.vision_query_key_value_list.1"].data["inputs"][0]["shape"] == [L + 1, 64]
    assert children["transformer.layers.1.attention.query_key_value"].data["inputs"][0]["shape"] == [S - L - 1, 64]
    assert by_id[attn1.parent].name == "transformer.layers.1.attention"  # hook nested in its module


def test_module_events(forward: Any, tiny: Any) -> None:
    trace, inputs, _, traced = forward
    modules = list(trace.of("module"))
    assert modules[0].name == "CogVLMModel" and modules[0].parent is None
    assert modules[0].data["outputs"][0]["shape"] == list(traced.shape)
    assert set(modules[0].data["kwargs"]) >= {"input_ids", "vision_expert_mask", "vision_image"}
    vit = next(e for e in modules if e.name == "mixins.eva.vit_model")
    assert vit.data["kwargs"]["image"]["shape"] == [1, 3, 490, 490]
    assert vit.data["outputs"][0]["shape"] == [1, tiny.args.image_length, tiny.args.eva_args["hidden_size"]]


def test_categories_and_depth_filters(tiny: Any) -> None:
    inputs = tiny_forward_inputs(tiny.args)
    with torch.no_grad(), tracer.trace(categories=["hook"], max_depth=3) as handle:
        tiny.model(**inputs)
    trace = handle.trace
    assert trace is not None and {e.category for e in trace.events} == {"hook"}
    # Without module events, depth counts hooks nested in hooks: layer_forward > attention_forward.
    assert {e.name for e in trace.events} >= {"word_embedding_forward", "layer_forward", "attention_forward"}


def _shapes(trace: Trace) -> list[tuple[str, str, Any, Any]]:
    def strip(infos: Any) -> Any:
        return [None if i is None else (tuple(i["shape"]), i["dtype"]) for i in infos]

    return [(e.category, e.name, strip(e.data.get("inputs", [])), strip(e.data.get("outputs", [])))
            for e in trace.events if e.category in ("module", "hook")]


def test_meta_shapes_equal_real_shapes(tiny: Any) -> None:
    """MetaWithValues: a meta forward records exactly the shapes of the real CPU forward."""
    meta_model = build_model(CONFIG, device="meta")
    inputs_cpu = ADAPTER.forward_inputs(tiny.args, text_tokens=7, image_device="cpu")
    inputs_meta = ADAPTER.forward_inputs(meta_model.args, text_tokens=7)
    with torch.no_grad():
        with tracer.trace(categories=["module", "hook"]) as real:
            tiny.model(**inputs_cpu)
        with tracer.trace(categories=["module", "hook"]) as fake, MetaWithValues():
            logits = meta_model.model(**inputs_meta)[0]
    assert real.trace is not None and fake.trace is not None
    assert logits.is_meta and tuple(logits.shape) == (1, 1 + 1227 + 7, tiny.args.vocab_size)
    assert _shapes(fake.trace) == _shapes(real.trace)
    branches = [e.data.get("branch") for e in fake.trace.of("hook")]
    assert branches == [e.data.get("branch") for e in real.trace.of("hook")]


def test_full_width_shapes(tmp_path: Path) -> None:
    """The article's widths (4096 / 1792, 1225 image tokens), EVA cut to one layer to stay quick."""
    config = json.loads(Path("configs/article/cogvlm-grounding-generalist/model_config.json").read_text())
    config["eva_args"]["num_layers"] = 1
    folder = tmp_path / "article-1-eva-layer"
    folder.mkdir()
    (folder / "model_config.json").write_text(json.dumps(config))
    from tracer.shapes import record_shapes

    run = record_shapes(folder, out_dir=tmp_path / "out", text_tokens=4)
    trace = run.handle.trace
    assert run.logits_shape == (1, 1 + 1227 + 4, 32000)
    shapes = {e.name: e.data for e in trace.of("module")}
    assert shapes["mixins.eva.vit_model"]["outputs"][0]["shape"] == [1, 1225, 1792]
    assert shapes["mixins.eva.linear_proj"]["outputs"][0]["shape"] == [1, 1225, 4096]
    assert shapes["mixins.mlp.vision_dense_h_to_4h_list.0"]["outputs"][0]["shape"] == [1226, 11008]
    assert shapes["transformer.layers.1.attention.query_key_value"]["outputs"][0]["shape"] == [6, 12288]  # BOS, eoi, 4 text
    assert (tmp_path / "out" / "trace.json").is_file() and "meta weights" in trace.meta["execution"]
    assert run.peak_rss_mb < 4096


def test_models_freed_during_a_recording_keep_their_own_paths() -> None:
    """Python reuses a freed module's id(): a later model must not inherit the earlier one's paths."""
    import gc

    first_paths = None
    with torch.no_grad(), tracer.trace(categories=["module"]) as handle:
        for _ in range(4):
            built = build_model(CONFIG)
            built.model(**tiny_forward_inputs(built.args))
            del built
            gc.collect()
    trace = handle.trace
    assert trace is not None
    roots = [e for e in trace.of("module") if e.parent is None]
    assert [e.name for e in roots] == ["CogVLMModel"] * 4
    by_root: dict[int, set[str]] = {r.id: set() for r in roots}
    for e in trace.of("module"):
        root = e
        while root.parent is not None:
            root = next(x for x in trace.events if x.id == root.parent)
        by_root[root.id].add(str(e.data["path"]))
    paths = list(by_root.values())
    first_paths = paths[0]
    assert all(p == first_paths for p in paths) and not any(p.startswith("?") for p in first_paths)
