"""A plain SAT script, no cogvlm-tracer in it: build a tiny LLaMA with SAT's ``get_model`` and
generate with ``filling_sequence`` and the KV-cache mixin.

    cogtrace run -o out/run examples/sat_llama.py --tokens 32       # traced, on a CPU
    python examples/sat_llama.py --tokens 32                        # as is, on a CUDA GPU

SAT's LLaMA uses SAT's Triton rotary kernel, which needs a CUDA GPU; ``cogtrace run`` on a
machine without one swaps in the same math in torch and names the swap in the trace. The
weights are SAT's seeded initialisation (nothing is downloaded), so the tokens are
meaningless; the point is the path: construction, every forward, every hook, every step.
"""

import argparse

import torch
from sat.generation.autoregressive_sampling import filling_sequence
from sat.generation.sampling_strategies import BaseStrategy
from sat.model.base_model import get_model
from sat.model.mixins import CachedAutoregressiveMixin
from sat.model.official.llama_model import LLaMAModel

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tokens", type=int, default=16, help="tokens to generate (default 16)")
parser.add_argument("--layers", type=int, default=2, help="transformer layers (default 2)")
opts = parser.parse_args()

args = LLaMAModel.get_args(num_layers=opts.layers, hidden_size=64, num_attention_heads=4, inner_hidden_size=176,
                           vocab_size=256, max_sequence_length=512, skip_init=False, model_parallel_size=1,
                           device="cpu", seed=1)
model = get_model(args, LLaMAModel).eval()
model.add_mixin("auto-regressive", CachedAutoregressiveMixin())  # keeps keys/values in mems

prompt = torch.tensor([1, 72, 101, 108, 108, 111])  # (6,): "<s>Hello" as bytes
seq = torch.cat([prompt, torch.full((opts.tokens,), -1)])  # -1: positions to generate
with torch.no_grad():
    output = filling_sequence(model, seq, batch_size=1, strategy=BaseStrategy(top_k=1, end_tokens=[]))[0]
print("generated:", output[0, len(prompt):].tolist())
