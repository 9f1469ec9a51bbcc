"""A short text account of a built CogVLM: where its parameters live and who serves each hook."""

from __future__ import annotations

from ..render.common import human_count
from ..values import count_parameters
from .build import BuildResult
from .model import CogVLMModel

__all__ = ["format_build_summary", "human_count", "parameter_table"]


def parameter_table(model: CogVLMModel) -> list[tuple[str, int]]:
    """(path, parameters) for the transformer, each mixin and each mixin's direct children."""
    rows: list[tuple[str, int]] = [("transformer", count_parameters(model.transformer))]
    for name, mixin in model.mixins.items():
        rows.append((f"mixins.{name}", count_parameters(mixin)))
        for child_name, child in mixin.named_children():
            rows.append((f"mixins.{name}.{child_name}", count_parameters(child)))
        for param_name, param in mixin.named_parameters(recurse=False):
            rows.append((f"mixins.{name}.{param_name}", param.numel()))
    return rows


def format_build_summary(result: BuildResult, *, seconds: float, peak_rss_mb: float) -> str:
    model, args = result.model, result.args
    total = result.num_parameters
    eva = args.eva_args
    lines = [
        f"CogVLMModel  {result.config.path}  on {args.device}",
        f"  language model: {args.num_layers} layers x {args.hidden_size}, {args.num_attention_heads} heads, "
        f"inner {args.inner_hidden_size}, vocab {args.vocab_size}",
        f"  vision tower:   {eva['num_layers']} layers x {eva['hidden_size']}, image {eva['image_size'][0]} px, "
        f"patch {eva['patch_size']} -> {args.image_length} image tokens",
        f"  parameters: {total:,} ({human_count(total)})   build: {seconds:.2f} s   peak RSS: {peak_rss_mb:,.0f} MB",
        "",
        "where the parameters live:",
    ]
    table = parameter_table(model)
    width = max(len(path) for path, _ in table)
    for path, count in table:
        indent = "  " * (path.count(".") - path.startswith("mixins."))
        lines.append(f"  {indent}{path:<{width}}  {count:>16,}")
    lines += ["", "SAT hooks (hook -> who serves it, from model.hook_origins):"]
    for hook, origin in model.hook_origins.items():
        lines.append(f"  {hook:<28} {origin}")
    return "\n".join(lines)
