"""Model parallelism on a CPU: CogVLM split across ranks by SAT's own ``mpu`` on ``torch.distributed``.

One concern per module:

* :mod:`.checks` — which world sizes a config allows (heads, hidden, inner, vocab), and the
  traps that give silently wrong logits (a stale shard, dropout left on);
* :mod:`.cpu_split` — the CPU substitution for SAT's split-at-load (``.cuda()`` in its sender);
* :mod:`.checkpoints` — load at any size (as saved, or split at load), save per rank, merge;
* :mod:`.collectives` — recording SAT's mpu split/gather/reduce and ``torch.distributed`` calls;
* :mod:`.rank` — what one rank does under torchrun (cli_demo's broadcast of inputs, traced);
* :mod:`.launch` — spawning ``torch.distributed.run`` with a timeout, one line on failure;
* :mod:`.merge` — per-rank traces into one Chrome trace, one lane per rank (no torch);
* :mod:`.memory` — bytes per rank of the full-size configs at model_parallel_size 1/2/4/8.
"""
