"""Construction tracing: the article's build order, parameter and hook deltas, any SAT model,
calls bound before tracing started, classes created during the recording."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from sat.model.base_model import BaseMixin, BaseModel
from sat.model.base_model import get_model as EARLY_GET_MODEL  # bound before any recording starts

import tracer
from tracer.cogvlm.build import build_model
from tracer.schema import Event, Trace

CONFIG = "configs/tiny/cogvlm-grounding-generalist"

# (depth, name, mixin) of every construction event of the article's section 2 on the tiny
# config. Mixin constructors run before the add_mixin that receives them (argument
# evaluation), so EVA2CLIPModel is built inside ImageMixin.__init__, before add_mixin('eva').
GOLDEN = [
    (0, "BaseModel.get_args", None),
    (0, "update_args_with_file", None),
    (0, "overwrite_args_by_dict", None),
    (0, "get_model", None),
    (1, "CogVLMModel.__init__", None),
    (2, "LLaMAModel.__init__", None),
    (3, "BaseModel.__init__", None),
    (3, "RotaryMixin.__init__", None),
    (3, "BaseModel.add_mixin", "rotary"),
    (3, "LMMixin.__init__", None),
    (3, "BaseModel.add_mixin", "lm"),
    (3, "LLaMAMlpMixin.__init__", None),
    (3, "BaseModel.add_mixin", "mlp"),
    (2, "ImageMixin.__init__", None),
    (3, "BaseModel.get_args", None),
    (3, "EVA2CLIPModel.__init__", None),
    (4, "BaseModel.__init__", None),
    (4, "ImagePatchEmbeddingMixin.__init__", None),
    (4, "BaseModel.add_mixin", "patch_embedding"),
    (4, "BaseMixin.__init__", None),  # InterpolatedPositionEmbeddingMixin has no __init__ of its own
    (4, "BaseModel.add_mixin", "pos_embedding"),
    (4, "IdentityMixin.__init__", None),
    (4, "BaseModel.add_mixin", "final"),
    (4, "NewLayerForward.__init__", None),
    (4, "BaseModel.add_mixin", "newpost"),
    (2, "BaseModel.add_mixin", "eva"),
    (2, "BaseModel.del_mixin", "mlp"),
    (2, "LlamaVisionExpertFCMixin.__init__", None),
    (2, "BaseModel.add_mixin", "mlp"),
    (2, "BaseModel.del_mixin", "rotary"),
    (2, "LlamaVisionExpertAttnMixin.__init__", None),
    (2, "BaseModel.add_mixin", "rotary"),
]


def depth(trace: Trace, event: Event) -> int:
    by_id, d = trace.by_id(), 0
    while event.parent is not None:
        event, d = by_id[event.parent], d + 1
    return d


@pytest.fixture(scope="module")
def built() -> tuple[Trace, Any]:
    with tracer.trace(categories=["construction"]) as handle:
        result = build_model(CONFIG)
    assert handle.trace is not None
    return handle.trace, result


def test_article_construction_order(built: tuple[Trace, Any]) -> None:
    trace, _ = built
    assert [(depth(trace, e), e.name, e.data.get("mixin")) for e in trace.events] == GOLDEN


def test_mixin_parameter_and_hook_deltas(built: tuple[Trace, Any]) -> None:
    trace, result = built
    model = result.model
    root = [e for e in trace.events if e.data.get("function") in ("add_mixin", "del_mixin") and e.data["owner"] == "CogVLMModel"]
    delta = {(e.data["function"], e.data["mixin"], e.data["mixin_class"]): e.data["params_after"] - e.data["params_before"]
             for e in root}
    count = {name: sum(p.numel() for p in mixin.parameters()) for name, mixin in model.mixins.items()}
    layers, hidden, inner = result.args.num_layers, result.args.hidden_size, result.args.inner_hidden_size
    assert delta == {
        ("add_mixin", "rotary", "RotaryMixin"): 0,  # LLaMA's rotary mixin holds no parameters
        ("add_mixin", "lm", "LMMixin"): count["lm"],
        ("add_mixin", "mlp", "LLaMAMlpMixin"): layers * hidden * inner,  # gate_proj per layer
        ("add_mixin", "eva", "ImageMixin"): count["eva"],
        ("del_mixin", "mlp", "LLaMAMlpMixin"): -layers * hidden * inner,
        ("add_mixin", "mlp", "LlamaVisionExpertFCMixin"): count["mlp"],
        ("del_mixin", "rotary", "RotaryMixin"): 0,
        ("add_mixin", "rotary", "LlamaVisionExpertAttnMixin"): count["rotary"],
    }
    # The deltas chain: each call starts where the previous one ended, and ends at the model's total.
    for before, after in zip(root[:-1], root[1:], strict=True):
        assert after.data["params_before"] == before.data["params_after"]
    assert root[-1].data["params_after"] == sum(p.numel() for p in model.parameters())
    # Hook tables: del_mixin('mlp') removes mlp_forward, the new mixin brings it back.
    del_mlp = next(e for e in root if e.data["function"] == "del_mixin" and e.data["mixin"] == "mlp")
    assert "mlp_forward" in del_mlp.data["hooks_before"] and "mlp_forward" not in del_mlp.data["hooks_after"]
    assert root[-1].data["hooks_after"] == dict(model.hook_origins) == dict(trace.hooks)
    eva = next(e for e in root if e.data["mixin"] == "eva")
    assert eva.data["hooks_after"]["word_embedding_forward"] == "eva"


def test_event_facts(built: tuple[Trace, Any]) -> None:
    trace, result = built
    by_name = {}
    for e in trace.events:
        by_name.setdefault(e.name, e)
    get_model = by_name["get_model"]
    assert get_model.source is not None and get_model.source.file.endswith("tracer/cogvlm/build.py")
    assert get_model.data["args"]["model_cls"] == "CogVLMModel"
    assert get_model.data["namespaces"]["args"]["hidden_size"] == "64"
    assert get_model.data["result"].startswith("CogVLMModel(644,000 params")
    assert get_model.data["defined_at"].endswith("sat/model/base_model.py:" + get_model.data["defined_at"].rsplit(":")[1])
    changed = by_name["update_args_with_file"].data["changed"]
    assert changed["num_layers"] == "2" and changed["image_length"] == "1225"
    assert by_name["ImageMixin.__init__"].data["model_path"] == "mixins.eva"
    eva_mixins = [e for e in trace.events if e.data.get("owner") == "EVA2CLIPModel" and e.data["function"] == "add_mixin"]
    assert [e.data["mixin"] for e in eva_mixins] == ["patch_embedding", "pos_embedding", "final", "newpost"]
    assert {e.data["model_path"] for e in eva_mixins} == {"mixins.eva.vit_model"}
    assert by_name["CogVLMModel.__init__"].data["model_path"] == ""
    assert trace.meta["model_class"] == "CogVLMModel"
    assert sum(m.parameters for m in trace.modules) == result.num_parameters == trace.modules[0].total


def test_external_official_sat_model() -> None:
    """Any SAT model, not only ours: SAT's own ViTModel, built and run tiny."""
    from sat.model.official.vit_model import ViTModel

    args = ViTModel.get_args(num_layers=2, hidden_size=32, num_attention_heads=2, vocab_size=1, max_sequence_length=5,
                             image_size=[32, 32], patch_size=16, num_classes=10, inner_hidden_size=64,
                             layernorm_order="pre", skip_init=False, model_parallel_size=1, device="cpu")
    with tracer.trace() as handle:
        model = EARLY_GET_MODEL(args, ViTModel).eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, dtype=torch.long), None, None, image=torch.randn(1, 3, 32, 32))
    trace = handle.trace
    assert trace is not None
    names = [e.name for e in trace.of("construction")]
    assert names[:3] == ["get_model", "ViTModel.__init__", "BaseModel.__init__"]
    assert [e.data["mixin"] for e in trace.of("construction") if e.data["function"] == "add_mixin"] == \
        ["patch_embedding", "pos_embedding", "cls"]
    served = {(e.name, e.data["layer_id"]): e.data["served_by"] for e in trace.of("hook")}
    assert served[("word_embedding_forward", None)] == "patch_embedding"
    assert served[("final_forward", None)] == "cls"
    assert served[("attention_forward", 1)] == served[("mlp_forward", 0)] == "default"
    final = next(e for e in trace.of("hook") if e.name == "final_forward")
    assert final.data["weights"] == ["mixins.cls.classifier"] and final.data["outputs"][0]["shape"] == [1, 10]


def test_calls_bound_before_tracing_are_caught(tmp_path: Path) -> None:
    """`from sat.model import get_model` executed before the recording: still recorded."""
    module_file = tmp_path / "early_user.py"
    module_file.write_text(textwrap.dedent("""
        from sat.model import get_model
        from sat.arguments import update_args_with_file

        def build(args, cls):
            return get_model(args, cls)
    """))
    spec = importlib.util.spec_from_file_location("early_user", module_file)
    assert spec is not None and spec.loader is not None
    early = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(early)
    from tracer.cogvlm.build import inference_args
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.model import CogVLMModel

    args = inference_args(load_config(CONFIG))
    with tracer.trace(categories=["construction"], max_depth=1) as handle:
        early.build(args, CogVLMModel)
    trace = handle.trace
    assert trace is not None
    assert [e.name for e in trace.events] == ["get_model"]  # max_depth=1: only the outermost call
    assert trace.events[0].source is not None and trace.events[0].source.file == str(module_file)
    assert early.get_model is EARLY_GET_MODEL  # the same function object, before and after


def test_class_created_during_recording_is_traced() -> None:
    from sat.model.official.vit_model import ViTModel

    with tracer.trace(categories=["construction"]) as handle:
        class LateMixin(BaseMixin):
            def __init__(self, width: int) -> None:
                super().__init__()
                self.proj = torch.nn.Linear(width, width)

        class LateModel(ViTModel):
            pass

        mixin = LateMixin(4)
    assert handle.trace is not None
    init = [e for e in handle.trace.events if e.name == "LateMixin.__init__"]
    assert len(init) == 1 and init[0].data["args"] == {"width": "4"} and init[0].data["params"] == 20
    assert "__init_subclass__" not in BaseMixin.__dict__ and "__init_subclass__" not in BaseModel.__dict__
    assert LateMixin.__dict__["__init__"].__code__.co_name == "__init__"  # unpatched after the block
    del mixin, LateModel


def test_module_functions_restored() -> None:
    from tracer.construction import construction_functions

    before = [(f, f.__code__, f.__kwdefaults__) for f in construction_functions()]
    with tracer.trace(categories=["construction"]):
        assert all(f.__code__ is not code for f, code, _ in before)  # patched in the block
    for func, code, kwdefaults in before:
        assert func.__code__ is code and func.__kwdefaults__ is kwdefaults
    assert sys.modules["sat.model.base_model"].get_model is EARLY_GET_MODEL


@pytest.mark.parametrize("max_depth", [0, 1, None])
def test_depth_filter_keeps_the_model_tree(max_depth: int | None) -> None:
    """A depth filter bounds the events; it must not decide whether the module tree is captured."""
    from tracer.cogvlm.build import build_model

    with tracer.trace(categories=["construction"], max_depth=max_depth) as handle:
        built = build_model(CONFIG)
    trace = handle.trace
    assert trace is not None
    assert trace.meta["model_class"] == "CogVLMModel"
    assert len(trace.modules) == len(list(built.model.named_modules(remove_duplicate=False)))
    assert "attention_forward" in trace.hooks
