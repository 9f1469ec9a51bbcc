"""What a model-parallel run must get right, checked before it can hang or answer wrongly.

* :func:`check_world_size` — SAT divides heads, hidden, inner and vocabulary widths by the
  model-parallel size (``sat.mpu.utils.divide`` asserts deep inside a build, on every rank);
  a vocabulary under 1,000 gets a plain ``nn.Embedding`` (``sat/model/transformer.py``) that is
  not split, yet the logits are still gathered across ranks: at mp=2 they come out twice as
  wide, silently.
* :func:`check_partition` — the *stale rank*: a rank whose parallel layers still hold a slice
  sized for another world size (e.g. after a merge, SAT reports world size 1 while the layer
  keeps its old half) returns logits of the wrong width.
* :func:`check_eval` — ``from_pretrained`` leaves the model in training mode: dropout makes
  two forwards of the same input differ, so logits can never be compared.

Each raises :class:`ParallelError` with one line naming the value and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import UserError

__all__ = ["PLAIN_EMBEDDING_BELOW", "ParallelError", "check_eval", "check_partition", "check_world_size"]

# sat/model/transformer.py: ``if vocab_size < 1000: nn.Embedding(...)`` else VocabParallelEmbedding.
PLAIN_EMBEDDING_BELOW = 1000


class ParallelError(UserError):
    """A model-parallel setting or state that cannot give the single-process answer."""


def _widths(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, int]]:
    """The widths SAT splits across ranks, named as in model_config.json."""
    widths = [(f"{prefix}num_attention_heads", int(values["num_attention_heads"])),
              (f"{prefix}hidden_size", int(values["hidden_size"]))]
    inner = values.get("inner_hidden_size")
    widths.append((f"{prefix}inner_hidden_size", int(inner) if inner else 4 * int(values["hidden_size"])))
    return widths


def check_world_size(values: Mapping[str, Any], world_size: int) -> None:
    """Refuse a model-parallel size the config cannot be split by (CogVLM: language model and
    the EVA tower in ``eva_args``)."""
    if world_size < 1:
        raise ParallelError(f"world size {world_size}: expected a positive number of ranks")
    if world_size == 1:
        return
    widths = _widths(values)
    vocab = int(values["vocab_size"])
    widths.append(("vocab_size", vocab))
    eva = values.get("eva_args")
    if isinstance(eva, Mapping):
        widths += _widths(eva, "eva_args.")
    for name, width in widths:
        if width % world_size:
            raise ParallelError(f"{name} {width} is not divisible by the world size {world_size}: SAT splits it "
                                f"evenly across model-parallel ranks; expected a size that divides {width}")
    if vocab < PLAIN_EMBEDDING_BELOW:
        raise ParallelError(f"vocab_size {vocab} < {PLAIN_EMBEDDING_BELOW}: SAT then uses a plain nn.Embedding that "
                            f"is not split but still gathers the logits across ranks ({vocab * world_size} wide at "
                            f"mp={world_size}); expected a vocabulary of at least {PLAIN_EMBEDDING_BELOW} for "
                            f"model parallelism")


def expected_rows(module: Any, world_size: int) -> tuple[int, int] | None:
    """(local, full) size of the split dimension of a parallel layer at ``world_size``, or None."""
    from .cpu_split import PARALLEL_LAYERS

    if not isinstance(module, PARALLEL_LAYERS):
        return None
    name = type(module).__name__
    # VocabParallelEmbedding: vocabulary rows; ColumnParallelLinear: output rows; RowParallelLinear: input columns.
    attr = {"VocabParallelEmbedding": "num_embeddings", "ColumnParallelLinear": "output_size"}.get(name, "input_size")
    full = int(getattr(module, attr))
    return full // world_size, full


def check_partition(model: nn.Module, world_size: int, rank: int = 0) -> None:
    """Refuse a model whose parallel layers hold slices of another world size (a stale rank)."""
    module: Any
    for path, module in model.named_modules():
        sizes = expected_rows(module, world_size)
        if sizes is None:
            continue
        local_expected, full = sizes
        weight = module.weight  # type: ignore[union-attr]
        dim = 1 if type(module).__name__ == "RowParallelLinear" else 0
        held = int(weight.shape[dim])
        if held != local_expected:
            raise ParallelError(
                f"rank {rank}: {path or type(model).__name__}.weight holds {held} of {full} "
                f"{'columns' if dim else 'rows'} but SAT's model-parallel world size is {world_size} (expected "
                f"{local_expected}): a stale shard from a run at mp={full // max(held, 1)}; its logits would be "
                f"{'narrower' if held < local_expected else 'wider'} than the vocabulary. Reload or re-split the model")


def check_eval(model: nn.Module) -> None:
    """Refuse a model in training mode whose dropout would make logits random."""
    if not model.training:
        return
    for path, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p:
            raise ParallelError(f"model is in training mode: dropout {path} (p={module.p}) makes every forward "
                                f"differ (from_pretrained returns a model in training mode); expected model.eval() "
                                f"before comparing logits")
