"""Model parallelism the SAT way, in a script run by torchrun: every rank loads its slice of the
tiny CogVLM (SAT's ``from_pretrained`` splitting the mp=1 checkpoint at load) and runs the same
forward; the layers' all-reduces put the logits together.

    torchrun --nproc_per_node 2 -m tracer.cli run -o out/run examples/mp_cogvlm.py   # traced per rank
    cogtrace merge out/run                                                         # one lane per rank

Every rank builds the same inputs (the shipped sample picture and a fixed question), so no
broadcast is needed here; ``cogtrace chat --nproc 2`` shows rank 0 reading and broadcasting.
"""

import torch

from tracer.cogvlm.adapter import ADAPTER
from tracer.cogvlm.config import load_config
from tracer.parallel.checkpoints import load_parallel

CONFIG = "tiny/cogvlm-base-224"

model, args = load_parallel(CONFIG)  # (model, args) at model_parallel_size = WORLD_SIZE
inputs = ADAPTER.prompt_inputs(load_config(CONFIG), "What is in the image?", max_length=512)
with torch.no_grad():
    logits = model(**inputs)[0]  # (1, tokens, vocab): each rank holds the whole logits after the gather
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
print(f"rank {rank} of mp {args.model_parallel_size}: logits {list(logits.shape)}")
