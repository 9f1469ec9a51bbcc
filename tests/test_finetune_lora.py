"""LoRA on our CogVLM, as upstream's demo adds it: the swap keeps the output (B = 0), gradients
reach only the factors under upstream's rule, and merge_lora is exact (the FAQ's claim)."""

from __future__ import annotations

import torch
from sat.model.finetune.lora2 import LoraMixin

from tests.conftest import tiny_forward_inputs
from tracer.cogvlm.build import build_model
from tracer.finetune.model import apply_trainable_rule, trainable_table


def _lora_model() -> tuple[torch.nn.Module, dict[str, object], torch.Tensor]:
    built = build_model("tiny/cogvlm-grounding-trained")
    model, args = built.model, built.args
    inputs = tiny_forward_inputs(args, text_len=4)
    with torch.no_grad():
        before = model(**inputs)[0]
    model.add_mixin("lora", LoraMixin(args.num_layers, 4), reinit=True)
    model.get_mixin("eva").vit_model.add_mixin("lora", LoraMixin(args.eva_args["num_layers"], 4), reinit=True)
    return model, inputs, before


def test_swap_keeps_the_output_and_the_rule_trains_only_the_factors() -> None:
    model, inputs, before = _lora_model()
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs)[0], before, atol=0, rtol=0)  # B = 0: nothing changed yet
    trainable = apply_trainable_rule(model, use_lora=True)
    rows = trainable_table(model, use_lora=True)
    assert trainable == sum(r.count for r in rows) == 7168 and len(rows) == 32
    model(**inputs)[0].float().logsumexp(-1).mean().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(".matrix_" in n for n in grads)


def test_merge_lora_is_exact() -> None:
    model, inputs, _ = _lora_model()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".matrix_B." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        lora_logits = model(**inputs)[0]
        model.get_mixin("lora").merge_lora()
        model.get_mixin("eva").vit_model.get_mixin("lora").merge_lora()
        merged_logits = model(**inputs)[0]
    assert not any(".matrix_" in n or ".original." in n for n, _ in model.named_parameters())
    assert (merged_logits - lora_logits).abs().max().item() < 1e-5
