"""Model parallelism on CPU: tiny CogVLM at model_parallel_size 2 under torchrun (gloo), traced per rank.

One torchrun job (module fixture) runs the checkpoint round trip on 2 ranks, traced: split an
mp=1 checkpoint at load (the CPU substitution for SAT's ``.cuda()`` sender), save mp=2, load
the mp_rank_00/01 files, merge back as upstream's merge_model.py. The tests compare it with a
single process. Logits at mp=2 differ from mp=1 only by the order of the reductions
(float32; measured max |diff| 5.6e-7 at |logit| <= 0.64): compared with atol 1e-5.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tracer.cli import main
from tracer.schema import Trace

CONFIG = "tiny/cogvlm-base-224"  # 256 image tokens: the quickest tiny config
ATOL = 1e-5  # mp=2 vs mp=1: reduction order only
QUERY = "Where is the dog in the image?"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's private cache (as conftest's), set for this module's fixtures too."""
    root = tmp_path_factory.getbasetemp() / "cogtrace-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COGTRACE_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def single(cache: Path) -> dict[str, torch.Tensor]:
    """mp=1 in this process: the generated checkpoint's weights and the logits of the sample forward."""
    from tracer.cogvlm.checkpoint import checkpoint_file, generated_checkpoint, load_model, read_state_dict
    from tracer.cogvlm.config import load_config
    from tracer.parallel.rank import sample_logits

    config = load_config(CONFIG)
    model, args = load_model(config)
    logits = sample_logits(model, args)
    weights = read_state_dict(checkpoint_file(generated_checkpoint(config)))
    return {"logits": logits, **{f"w:{k}": v for k, v in weights.items()}}


@pytest.fixture(scope="module")
def roundtrip(cache: Path, single: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tracer.parallel.launch import launch

    work = tmp_path_factory.mktemp("roundtrip")
    launch(["roundtrip", CONFIG, "--work", str(work), "--trace", str(work / "trace")], 2, timeout=300,
           log=work / "torchrun.log")
    return work


def _traces(folder: Path) -> list[Trace]:
    from tracer.parallel.merge import load_rank_traces

    return load_rank_traces(folder)


# ---------------------------------------------------------------------------------------------
# Logits and checkpoints across sizes


def test_mp2_logits_equal_mp1_on_both_ranks(roundtrip: Path, single: dict[str, torch.Tensor]) -> None:
    reference = single["logits"]
    for stage in ("split", "loaded"):
        rank0, rank1 = (torch.load(roundtrip / f"{stage}_rank{r}.pt") for r in (0, 1))
        assert rank0.shape == reference.shape == (1, reference.shape[1], 2048)  # full vocabulary width
        assert torch.equal(rank0, rank1)  # every rank ends with the gathered logits
        torch.testing.assert_close(rank0, reference, atol=ATOL, rtol=0)


def test_merge_back_is_exact(roundtrip: Path, single: dict[str, torch.Tensor]) -> None:
    from tracer.cogvlm.checkpoint import checkpoint_file, read_state_dict

    merged = read_state_dict(checkpoint_file(roundtrip / "merged"))
    original = {k[2:]: v for k, v in single.items() if k.startswith("w:")}
    assert merged.keys() == original.keys()
    assert all(torch.equal(merged[k], original[k]) for k in original)
    assert torch.equal(torch.load(roundtrip / "merged_rank0.pt"), single["logits"])  # same weights, mp=1


def test_saved_shards_are_sats_partition(roundtrip: Path, cache: Path) -> None:
    """The CPU split-at-load gives each rank exactly what SAT's own partition() computes."""
    from tracer.cogvlm.build import build_model
    from tracer.cogvlm.checkpoint import read_state_dict
    from tracer.cogvlm.config import load_config
    from tracer.parallel.cpu_split import PARALLEL_LAYERS

    model = build_model(load_config(CONFIG)).model
    model.load_state_dict(read_state_dict(roundtrip / "merged" / "1" / "mp_rank_00_model_states.pt"))
    shards = [read_state_dict(roundtrip / "mp2" / "1" / f"mp_rank_{r:02d}_model_states.pt") for r in (0, 1)]
    assert json.loads((roundtrip / "mp2" / "model_config.json").read_text())["model_parallel_size"] == 2
    checked = 0
    for path, module in model.named_modules():
        if isinstance(module, PARALLEL_LAYERS):
            weights, _ = module.partition(2)  # type: ignore[operator]
            for rank in (0, 1):
                assert torch.equal(shards[rank][f"{path}.weight"], weights[rank]), (path, rank)
            checked += 1
        else:
            for name, param in module.named_parameters(recurse=False):
                key = f"{path}.{name}" if path else name
                assert all(torch.equal(shards[r][key], param) for r in (0, 1)), key  # replicated
    assert checked == 30
    assert shards[0]["transformer.layers.0.attention.query_key_value.weight"].shape == (96, 64)


def test_stale_rank_after_merge_is_named(roundtrip: Path) -> None:
    line = (roundtrip / "stale_rank1.txt").read_text().strip()
    assert "\n" not in line
    assert "rank 1" in line and "holds 1024 of 2048" in line and "world size is 1" in line


def test_dropout_left_on_is_named(cache: Path) -> None:
    from tracer.cogvlm.build import build_model
    from tracer.parallel.checks import ParallelError, check_eval
    from tracer.parallel.rank import sample_logits

    built = build_model(CONFIG)
    check_eval(built.model)  # eval mode: fine
    built.model.train()  # what from_pretrained returns
    with pytest.raises(ParallelError, match=r"training mode: dropout .* \(p=0\.1\)"):
        check_eval(built.model)
    with pytest.raises(ParallelError, match="expected model.eval"):  # the comparison helper refuses it too
        sample_logits(built.model, built.args)


# ---------------------------------------------------------------------------------------------
# Per-rank traces, merged


def test_per_rank_traces_merge_into_one_lane_per_rank(roundtrip: Path) -> None:
    from tracer.parallel.merge import write_merged

    traces = _traces(roundtrip / "trace")
    assert [(t.meta["rank"], t.meta["world_size"], t.meta["model_parallel_size"]) for t in traces] == [
        (0, 2, 2), (1, 2, 2)]
    doc = json.loads(write_merged(roundtrip / "trace").read_text())
    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert {e["pid"] for e in complete} == {0, 1}
    names = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    assert names == {0: "rank 0 of 2", 1: "rank 1 of 2"}
    aligns = [e for e in complete if e["name"] == "align"]
    ends = [e["ts"] + e["dur"] for e in aligns]
    assert len(aligns) == 2 and ends[0] == pytest.approx(ends[1], abs=1e-3)


def test_collectives_recorded_with_shapes_and_bytes(roundtrip: Path) -> None:
    from tracer.render.parallel import collective_rows

    rank0, rank1 = _traces(roundtrip / "trace")
    rows = {(r.layer, r.op): r for r in collective_rows(rank0)}
    dense = rows[("transformer.layers.*.attention.dense", "mpu.reduce")]
    assert dense.count > 0 and dense.bytes > 0
    assert ("transformer.word_embeddings", "mpu.reduce") in rows  # VocabParallelEmbedding
    assert ("mixins.lm.lm_head", "mpu.gather") in rows  # the logits
    # SAT's split-at-load: rank 0 sends, rank 1 receives the same tensors.
    sends = [e for e in rank0.of("collective") if e.name == "send"]
    recvs = [e for e in rank1.of("collective") if e.name == "recv"]
    assert len(sends) == len(recvs) > 0
    assert [e.data["bytes"] for e in sends] == [e.data["bytes"] for e in recvs]
    assert all(e.data["peer"] == 1 for e in sends) and all(e.data["peer"] == 0 for e in recvs)
    gather = next(e for e in rank0.of("collective") if e.name == "all_gather")
    assert gather.data["shapes"][0]["shape"] and gather.data["group_size"] == 2


def test_who_holds_what(roundtrip: Path) -> None:
    from tracer.render.parallel import render_parallel_text, who_holds_what_rows, who_holds_what_svg

    traces = _traces(roundtrip / "trace")
    rows = {r[0]: r for r in who_holds_what_rows(traces)}
    qkv = rows["transformer.layers.0.attention.query_key_value"]
    assert qkv[1:4] == ["ColumnParallelLinear", "192x64", "0"]
    assert qkv[4] == "[0:32) + [64:96) + [128:160) 96x64"  # a share of q, of k and of v
    assert qkv[5] == "[32:64) + [96:128) + [160:192) 96x64"
    assert rows["transformer.word_embeddings"][4:] == ["[0:1024) 1024x64", "[1024:2048) 1024x64"]
    assert rows["transformer.layers.0.attention.dense"][3:] == ["1", "[0:32) 64x32", "[32:64) 64x32"]
    assert who_holds_what_svg(traces).count("<title>rank 1:") == 24 + 6 * 3  # 6 fused QKVs: 3 slices each
    assert "Hook dispatches per rank" in render_parallel_text(traces)


# ---------------------------------------------------------------------------------------------
# Commands and failure modes


def _max_length(new_tokens: int) -> int:
    """What ``cogtrace report`` uses: the prompt's length plus the tokens to generate."""
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.text_processor import TextProcessor
    from tracer.cogvlm.tokenizer import choose_version, tokenizer_for_config

    config = load_config(CONFIG)
    version = choose_version(None, config.values, config.name)
    processor = TextProcessor(tokenizer_for_config(config.values, None, version), 1 << 30,
                              int(config.values["image_length"]))
    return len(processor.token_ids(processor.history_to_prompt(QUERY))[0]) + new_tokens


def test_report_nproc2_answers_as_one_process(cache: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Greedy (top_k 1): the same answer at mp=2 as in one process; one merged trace and one report."""
    length = _max_length(8)
    assert main(["chat", CONFIG, "--query", QUERY, "--max-length", str(length), "--output",
                 str(tmp_path / "one.png")]) == 0
    one = [line for line in capfd.readouterr().out.splitlines() if line.startswith("Model:")]
    out = tmp_path / "mp2"
    assert main(["report", CONFIG, "--query", QUERY, "--max-new-tokens", "8", "--nproc", "2", "-o", str(out)]) == 0
    printed = capfd.readouterr()
    two = [line for line in printed.out.splitlines() if line.startswith("Model:")]
    assert len(one) == 1 and two == one  # printed once, by rank 0
    # SAT's and DeepSpeed's log lines, imported by each rank, are kept in the traces, not printed.
    chatter = [line for line in (printed.out + printed.err).splitlines() if "] [WARNING] [" in line or "] [INFO] [" in line]
    assert chatter == []
    traces = _traces(out)
    broadcasts = [e.data["objects"] for e in traces[1].of("collective") if e.name == "broadcast_object_list"]
    assert any(QUERY in text for text in broadcasts)  # rank 1 got the query from rank 0, as cli_demo does
    page = (out / "report.html").read_text(encoding="utf-8")
    for section in ("Who holds what", "Collectives per layer", "Hook dispatches per rank", "Memory per rank"):
        assert section in page
    assert "<svg" in page and (out / "collectives.svg").is_file() and (out / "output.png").is_file()
    memory = json.loads((out / "memory.json").read_text())[0]
    assert memory["name"] == "cogvlm-base-224" and [r["model_parallel_size"] for r in memory["rows"]] == [1, 2, 4, 8]


def test_memory_per_rank_of_the_full_model(cache: Path) -> None:
    from tracer.parallel.memory import memory_table

    table = memory_table("full/cogvlm-chat-v1.1")
    rows = {r["model_parallel_size"]: r for r in table["rows"]}
    assert rows[1]["parameters_per_rank"] == table["parameters"] == 17_639_685_376
    split = table["parameters"] - table["replicated"]
    for size, row in rows.items():
        assert row["parameters_per_rank"] == table["replicated"] + split // size
        assert row["weights_bytes"]["bf16"] == 2 * row["parameters_per_rank"] == row["weights_bytes"]["fp32"] // 2
        assert row["kv_cache_bytes_per_token"]["bf16"] == 2 * 2 * 32 * 4096 // size  # K and V, 32 layers, bf16
        assert row["refused"] is None
    assert rows[2]["weights_bytes"]["bf16"] < 24 * 2**30 < rows[1]["weights_bytes"]["bf16"]  # two 24 GB cards


def test_world_size_not_dividing_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", CONFIG, "--query", QUERY, "--nproc", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "num_attention_heads 4 is not divisible by the world size 3" in err


def test_small_vocabulary_is_refused() -> None:
    from tracer.parallel.checks import ParallelError, check_world_size

    values = {"num_attention_heads": 4, "hidden_size": 64, "inner_hidden_size": 176, "vocab_size": 512}
    with pytest.raises(ParallelError, match=r"vocab_size 512 < 1000: .* \(1024 wide at mp=2\)"):
        check_world_size(values, 2)


def test_checkpoint_of_another_size_without_split_is_one_line(cache: Path, roundtrip: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tracer.parallel.checkpoints import load_parallel
    from tracer.parallel.checks import ParallelError

    monkeypatch.setenv("WORLD_SIZE", "2")  # refused before any process group is joined
    with pytest.raises(ParallelError, match=r"saved at model_parallel_size 1, running 2 ranks without the split"):
        load_parallel(CONFIG, split=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ParallelError, match=r"saved at model_parallel_size 2, running 1 ranks; SAT splits only"):
        load_parallel(roundtrip / "mp2")


def test_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["chat", CONFIG, "--query", QUERY, "--nproc", "2", "--master-port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"--master-port {port}: already in use" in err


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(pid))
            except OSError:
                pass
    return found


def test_a_dying_rank_stops_the_others(cache: Path, tmp_path: Path) -> None:
    from tracer.parallel.launch import LaunchError, launch

    marker = str(tmp_path / "logits")  # in every rank's command line
    started = time.monotonic()
    with pytest.raises(LaunchError) as failed:
        launch(["logits", CONFIG, "--save", marker, "--fail-rank", "1"], 2, timeout=120, log=tmp_path / "log")
    assert time.monotonic() - started < 120
    message = str(failed.value)
    assert "\n" not in message and "rank 1 failed with exit code 3" in message
    assert _processes_mentioning(marker) == []  # no orphan rank
    assert not (Path(marker) / "logits_rank0.pt").exists()  # rank 0 never got to compute


def test_run_under_torchrun_writes_per_rank_traces(cache: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tracer.parallel.launch import _env, free_port

    script = Path(__file__).parents[1] / "examples" / "mp_cogvlm.py"  # the README's torchrun line
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "tracer.cli", "run", "-o", str(out), str(script)],
        env=_env(1), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    assert [line.split(":")[0] for line in lines] == ["rank 0 of mp 2", "rank 1 of mp 2"]
    assert lines[0].split(":")[1] == lines[1].split(":")[1]  # the same (gathered) logits shape on both
    assert main(["merge", str(out)]) == 0
    traces = _traces(out)
    assert [t.meta["rank"] for t in traces] == [0, 1]
    assert all(t.meta["parallel_layout"]["layers"] for t in traces)
    assert any(e.name == "recv" for e in traces[1].of("collective"))  # split at load, recorded
    assert (out / "trace.chrome.json").is_file() and (out / "report.html").is_file()
