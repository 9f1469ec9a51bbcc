"""Upstream CogVLM's own model code, from a checkout of THUDM/CogVLM you have, run on a CPU.

    git clone https://github.com/THUDM/CogVLM /path/to/CogVLM          # once, where there is internet
    cogtrace run --cpu -o out/up examples/upstream_cogvlm.py /path/to/CogVLM

Upstream's ``utils/models/cogvlm_model.py`` imports xformers and uses SAT's Triton rotary
kernel, both GPU-only: ``--cpu`` swaps in torch for them and names the swaps in the trace
(``meta.cpu_substitutions``). The model is built through SAT's ``get_model`` from the tiny
base-224 config with a 1792-wide vision tower (upstream's GLU hard-codes that width), with
SAT's seeded weights, and runs one forward on the shipped sample picture.
``scripts/compare_upstream.py`` checks the same model's logits against ours (bit-identical).
"""

import sys
import tempfile
from pathlib import Path

import torch
from sat.arguments import update_args_with_file
from sat.model.base_model import get_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from compare_upstream import QUERY, check_checkout, import_upstream, upstream_config  # noqa: E402

from tracer.cogvlm.adapter import ADAPTER  # noqa: E402
from tracer.cogvlm.build import environment_args  # noqa: E402
from tracer.cogvlm.config import load_config  # noqa: E402

if len(sys.argv) != 2:
    raise SystemExit("usage: examples/upstream_cogvlm.py /path/to/CogVLM (a checkout of github.com/THUDM/CogVLM)")
checkout = Path(sys.argv[1])
check_checkout(checkout)  # one line if it is not a checkout
with tempfile.TemporaryDirectory(prefix="cogvlm-upstream-") as tmp:
    config = load_config(upstream_config(Path(tmp)))
    Upstream = import_upstream(checkout)  # utils.models.cogvlm_model.CogVLMModel
    args = update_args_with_file(Upstream.get_args(), path=str(config.path))
    environment_args(args, device="cpu", skip_init=False)  # SAT's seeded initialisation
    model = get_model(args, Upstream).eval()
    inputs = ADAPTER.prompt_inputs(config, QUERY, max_length=512)
    with torch.no_grad():
        logits = model(**inputs)[0]
print(f"upstream {Upstream.__module__}.{Upstream.__qualname__}: logits {list(logits.shape)}")
