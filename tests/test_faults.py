"""Faults a hostile user (or a full disk) causes: one line, a non-zero exit, and an output
folder that is either the previous result untouched or absent — never a mix of two runs.

Each class of the reliability issue is reproduced here: interrupted and failed report writes
(in-process with a fault injected at a chosen write, and a real SIGINT into a running
``cogtrace report``), read-only and full output through a small tmpfs mount (root only;
skipped otherwise), ``-o`` under a regular file, a failure to write ``run``'s own trace, the
two-thread race on ``tracer.trace()``, config values of the wrong type, nesting bombs, models
too big for the machine, NaN weights, and the first-ten-minutes annoyances.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracer.cli import main

REPO = Path(__file__).resolve().parent.parent
TINY = "configs/tiny/cogvlm-grounding-generalist"
TINY_CONFIG = REPO / "tracer" / "cogvlm" / "configs" / "tiny" / "cogvlm-grounding-generalist" / "model_config.json"
# Markers of SAT's and DeepSpeed's log format ("[2026-...] [INFO] ..."): none may reach the terminal.
LOG_MARKERS = ("[INFO]", "[WARNING]", "DeepSpeed", "model parallel")


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (the folder's state, to compare before/after)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _old_report(folder: Path) -> dict[str, bytes]:
    """A previous report folder (files of a different run) plus a file of the user's own."""
    folder.mkdir(parents=True)
    for name in ("trace.json", "trace.chrome.json", "report.html", "architecture.svg", "tree.txt"):
        (folder / name).write_text(f"previous run: {name}\n", encoding="utf-8")
    (folder / "my-notes.txt").write_text("mine\n", encoding="utf-8")
    return _snapshot(folder)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name
                  or ".probe-" in p.name)


def _config(tmp_path: Path, name: str, change: Any) -> Path:
    values = json.loads(TINY_CONFIG.read_text(encoding="utf-8"))
    change(values)
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model_config.json").write_text(json.dumps(values), encoding="utf-8")
    return folder


@pytest.fixture()
def mount(tmp_path: Path) -> Iterator[Any]:
    """``mount(size)`` -> a fresh tmpfs of that size (root only), unmounted afterwards."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small tmpfs needs root (the in-process fault tests cover the logic)")
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def _remount_read_only(point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True, capture_output=True)


# ---------------------------------------------------------------------------------------------
# 1. Report folders that lie


def _fail_on_write(monkeypatch: pytest.MonkeyPatch, at: int, error: BaseException) -> list[Path]:
    """Make the ``at``-th call of tracer.files.write_atomic raise ``error`` (after ``at - 1`` good writes)."""
    import tracer.files

    real = tracer.files.write_atomic
    calls: list[Path] = []

    def flaky(path: str | Path, data: str | bytes) -> Path:
        calls.append(Path(path))
        if len(calls) == at:
            raise error
        return real(path, data)

    monkeypatch.setattr(tracer.files, "write_atomic", flaky)
    return calls


def test_disk_full_while_writing_views_keeps_the_previous_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    before = _old_report(out)
    full = OSError(errno.ENOSPC, "No space left on device", str(out / "calls.svg"))
    calls = _fail_on_write(monkeypatch, 6, full)
    code = main(["report", TINY, "-o", str(out), "--max-new-tokens", "2"])
    line = _one_line(capsys.readouterr().err)
    assert code == 1 and len(calls) == 6
    assert "No space left on device" in line and "calls.svg" in line
    assert _snapshot(out) == before  # the old report, whole: no new trace.json beside old pictures
    assert _leftovers(tmp_path) == []


def test_ctrl_c_while_writing_into_a_new_folder_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new-report"
    _fail_on_write(monkeypatch, 4, KeyboardInterrupt())
    code = main(["report", TINY, "-o", str(out), "--max-new-tokens", "2"])
    assert code == 130 and _one_line(capsys.readouterr().err) == "cogtrace report: interrupted"
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_rerun_replaces_the_whole_report_and_keeps_the_users_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    _old_report(out)
    (out / "steps.txt").write_text("a view this run also writes\n", encoding="utf-8")
    assert main(["report", TINY, "-o", str(out), "--build-only"]) == 0
    capsys.readouterr()
    names = {p.name for p in out.iterdir()}
    assert "my-notes.txt" in names and (out / "my-notes.txt").read_text(encoding="utf-8") == "mine\n"
    assert "steps.txt" not in names  # an old view this (construction-only) run does not make: dropped
    assert json.loads((out / "trace.json").read_text(encoding="utf-8"))["format"] == "cogvlm-tracer"
    assert "previous run" not in (out / "report.html").read_text(encoding="utf-8")
    assert _leftovers(tmp_path) == []


def _staging_appears(parent: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(".staging-" in p.name for p in parent.iterdir()):
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_real_signal_into_an_existing_report_folder_leaves_it_untouched(tmp_path: Path, signum: int) -> None:
    """The failure as a user met it: a signal arrives while the report's files are written."""
    out = tmp_path / "report"
    before = _old_report(out)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from tracer.cli import main; sys.exit(main())",
                             "report", TINY, "-o", str(out), "--max-new-tokens", "2"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    caught = _staging_appears(tmp_path, proc)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert caught, f"the report finished before its staging folder was seen:\n{stderr}"
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), stderr
    word = "interrupted" if signum == signal.SIGINT else "terminated"
    assert _one_line(stderr) == f"cogtrace report: {word}"
    assert _snapshot(out) == before
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# 2. The two-thread race on tracer.trace()


def test_two_threads_entering_trace_together_leave_no_patch_behind() -> None:
    import sat.arguments
    import sat.generation.autoregressive_sampling as sampling
    import sat.model.base_model

    import tracer
    from tracer.session import TracingError

    watched = [sat.model.base_model.get_model, sat.arguments.update_args_with_file, sat.arguments.get_args,
               sampling.filling_sequence]
    originals = [f.__code__ for f in watched]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            barrier = threading.Barrier(2)
            outcomes: list[str] = []

            def enter(barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes) -> None:
                barrier.wait()
                try:
                    with tracer.trace(None):
                        time.sleep(0.01)
                    outcomes.append("traced")
                except TracingError:
                    outcomes.append("refused")

            threads = [threading.Thread(target=enter) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(outcomes) == ["refused", "traced"]
            assert [f.__code__ for f in watched] == originals
    finally:
        sys.setswitchinterval(previous)


def test_a_leaked_trampoline_is_never_copied_as_the_original() -> None:
    from tracer.patching import PatchSet
    from tracer.session import TracingError

    def victim(x: int) -> int:
        return x + 1

    leaked = PatchSet()
    leaked.swap_code(victim, lambda original: original)  # a patch someone forgot to undo
    try:
        with pytest.raises(TracingError, match="still patched by another tracing session"):
            PatchSet().swap_code(victim, lambda original: original)
    finally:
        leaked.undo()
    assert victim(1) == 2 and PatchSet().swap_code(victim, lambda original: original)


# ---------------------------------------------------------------------------------------------
# 3. Operating-system errors at the edges


def test_read_only_output_is_refused_before_any_model_work(
        mount: Any, capsys: pytest.CaptureFixture[str]) -> None:
    point = mount("1m")
    _remount_read_only(point)
    started = time.perf_counter()
    code = main(["report", TINY, "-o", str(point / "report")])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "Read-only file system" in line and str(point) in line
    assert time.perf_counter() - started < 30  # refused up front: no model was built (that alone is minutes)
    assert list(point.iterdir()) == []


def test_full_disk_leaves_no_folder(mount: Any, capsys: pytest.CaptureFixture[str]) -> None:
    point = mount("64k")  # far less than a report (~0.5 MB)
    code = main(["report", TINY, "-o", str(point / "report"), "--build-only"])
    line = _one_line(capsys.readouterr().err)
    assert code == 1 and "No space left on device" in line
    assert list(point.iterdir()) == []  # no folder, no staging leftovers


def test_chat_checks_its_picture_folder_before_the_model_turn(
        mount: Any, capsys: pytest.CaptureFixture[str]) -> None:
    point = mount("1m")
    _remount_read_only(point)
    code = main(["chat", TINY, "--query", "What is this?", "--output", str(point / "output.png")])
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert code == 2 and "Read-only file system" in line and "Model:" not in captured.out


@pytest.mark.parametrize("command", [["build", TINY], ["shapes", "configs/tiny/cogvlm-chat-v1.1"]])
def test_output_under_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     command: list[str]) -> None:
    plain = tmp_path / "a-file"
    plain.write_text("x", encoding="utf-8")
    code = main([*command, "-o", str(plain / "sub" / "out")])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "is a file, not a folder" in line and str(plain) in line
    assert plain.read_text(encoding="utf-8") == "x"


def test_run_tells_its_own_write_failure_from_the_scripts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import tracer.session

    script = tmp_path / "fine.py"
    script.write_text("print('the script ran')\n", encoding="utf-8")

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "trace.json"))

    monkeypatch.setattr(tracer.session, "write_files", full)
    code = main(["run", "-o", str(tmp_path / "out"), str(script)])
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert code == 2 and "the script ran" in captured.out
    assert "could not write the trace" in line and "No space left on device" in line
    assert "the script itself exited with status 0" in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# 4. Config values of the wrong type, nesting, sizes the machine cannot hold


@pytest.mark.parametrize(("name", "change", "expected"), [
    ("pre_len", lambda c: c["eva_args"].__setitem__("pre_len", "1"), "'eva_args.pre_len' = '1'"),
    ("seq", lambda c: c.__setitem__("max_sequence_length", "abc"), "'max_sequence_length' = 'abc'"),
    ("order", lambda c: c.__setitem__("layernorm_order", "sideways"),
     "'layernorm_order' = 'sideways': expected one of ['post', 'pre', 'sandwich']"),
    ("eva_order", lambda c: c["eva_args"].__setitem__("layernorm_order", 3), "'eva_args.layernorm_order' = 3"),
    ("eps", lambda c: c.__setitem__("layernorm_epsilon", "tiny"), "'layernorm_epsilon' = 'tiny': expected a number"),
    ("flag", lambda c: c.__setitem__("is_gated_mlp", "no"), "'is_gated_mlp' = 'no': expected true or false"),
])
def test_config_values_are_checked_against_sats_argparse(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, change: Any, expected: str) -> None:
    folder = _config(tmp_path, name, change)
    code = main(["build", str(folder), "-o", str(tmp_path / "out")])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and expected in line and str(folder) in line
    assert not (tmp_path / "out").exists()


def test_deeply_nested_config_and_trace_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = "[" * 200_000 + "]" * 200_000
    folder = tmp_path / "deep"
    folder.mkdir()
    (folder / "model_config.json").write_text('{"eva_args": ' + bomb + "}", encoding="utf-8")
    assert main(["build", str(folder)]) == 2
    assert "nested deeper" in _one_line(capsys.readouterr().err)
    trace = tmp_path / "trace.json"
    trace.write_text('{"format": "cogvlm-tracer", "schema_version": 1, "meta": ' + "{\"a\": " * 100 + "1"
                     + "}" * 100 + ', "events": []}', encoding="utf-8")
    assert main(["render", str(trace), "--format", "tree"]) == 2
    assert "nested more than 64 levels" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(("name", "change"), [
    ("layers", lambda c: c.__setitem__("num_layers", 10**9)),
    ("hidden", lambda c: c.update(hidden_size=2**20, num_attention_heads=2**10)),
])
def test_a_model_too_big_for_the_machine_is_refused_from_a_meta_estimate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, change: Any) -> None:
    folder = _config(tmp_path, name, change)
    code = main(["build", str(folder)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "parameters need" in line and "GB" in line and "--device meta" in line


def test_the_meta_estimate_is_the_real_count() -> None:
    from tracer.cogvlm.build import build_model
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.memory import count_parameters

    config = load_config(TINY)
    real = sum(p.numel() for p in build_model(config, device="meta").model.parameters())
    assert count_parameters(config) == real == 644_000
    assert count_parameters(config, num_layers=5) == sum(
        p.numel() for p in build_model(config, device="meta", num_layers=5).model.parameters())


# ---------------------------------------------------------------------------------------------
# 5. NaN weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_checkpoint_with_nan_or_inf_is_refused_at_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: float) -> None:
    import torch

    from tracer.cogvlm.build import build_model
    from tracer.cogvlm.checkpoint import save_checkpoint

    result = build_model(TINY)
    with torch.no_grad():
        result.model.transformer.layers[1].mlp.dense_4h_to_h.weight[3, 5] = bad
    folder = save_checkpoint(result.model, result.config, tmp_path / "ckpt")
    code = main(["chat", str(folder), "--query", "What is this?", "--output", str(tmp_path / "o.png")])
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    kind = "NaN" if bad != bad else "Inf"
    assert code == 2 and "transformer.layers.1.mlp.dense_4h_to_h.weight" in line and kind in line
    assert "mp_rank_00_model_states.pt" in line and "Model:" not in captured.out
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------------------------------------
# The first ten minutes


def test_sat_and_deepspeed_chatter_is_kept_in_the_trace_not_printed(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cli = [sys.executable, "-c", "import sys; from tracer.cli import main; sys.exit(main())"]
    quiet = subprocess.run([*cli, "build", TINY, "-o", str(tmp_path / "b")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert quiet.returncode == 0, quiet.stderr
    for marker in LOG_MARKERS:
        assert marker not in quiet.stdout and marker not in quiet.stderr, marker
    log = json.loads((tmp_path / "b" / "trace.json").read_text(encoding="utf-8"))["meta"]["library_log"]
    assert any("building CogVLMModel" in line for line in log)
    assert any(line.startswith("WARNING DeepSpeed") for line in log)  # the one that went to stdout
    loud = subprocess.run([*cli, "--verbose", "build", TINY], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert loud.returncode == 0 and "building CogVLMModel" in loud.stdout + loud.stderr


def test_the_readme_import_path_is_true() -> None:
    import tracer.cogvlm
    from tracer.cogvlm.model import CogVLMModel

    assert tracer.cogvlm.CogVLMModel is CogVLMModel
    assert "`tracer.cogvlm.CogVLMModel`" in (REPO / "README.md").read_text(encoding="utf-8")


def test_chat_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's chat line, run in a checkout-like folder: picture in out/, a short clean answer."""
    from tracer.cogvlm import DEFAULT_QUERY

    monkeypatch.chdir(tmp_path)
    assert main(["chat", TINY, "--query", DEFAULT_QUERY]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "out" / "output.png").is_file() and not (tmp_path / "output.png").exists()
    answer = next(line for line in out.splitlines() if line.startswith("Model: "))
    assert DEFAULT_QUERY not in answer and "\ufffd" not in answer
    generated = int(out.split(" generated in ")[0].rsplit(" ", 1)[1])
    assert 1 <= generated <= 64


def test_clean_response() -> None:
    from tracer.cogvlm.chat import clean_response

    assert clean_response(" a red\ufffd square</s>", "[/INST]") == "a red square"
    assert clean_response("echo [/INST] the answer", "[/INST]") == "the answer"


def test_the_default_question_fits_the_default_picture() -> None:
    from tracer.cogvlm import DEFAULT_QUERY
    from tracer.commands import chat, report

    assert "red square" in DEFAULT_QUERY and "dog" not in DEFAULT_QUERY
    source = (REPO / "scripts" / "make_sample_image.py").read_text(encoding="utf-8")
    assert '"red square"' in source  # the sample picture draws it
    assert report.DEFAULT_QUERY is DEFAULT_QUERY and chat.DEFAULT_QUERY is DEFAULT_QUERY


def test_report_on_a_full_width_config_points_to_device_meta(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    code = main(["report", "configs/article/cogvlm-grounding-generalist", "-o", str(tmp_path / "r")])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "--tokenizer DIR" in line and "--device meta" in line
    assert not (tmp_path / "r").exists()


def test_tiny_models_run_on_one_thread_and_the_setting_is_restored() -> None:
    import torch

    from tracer.threads import threads_for

    before = torch.get_num_threads()
    with threads_for(644_000):
        assert torch.get_num_threads() == 1
    with threads_for(10**10, requested=None):
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before


def test_the_chrome_file_is_written_on_request(tmp_path: Path) -> None:
    import tracer
    from tracer.cogvlm.build import build_model

    with tracer.trace(tmp_path / "plain", categories=["construction"]):
        build_model(TINY, device="meta")
    with tracer.trace(tmp_path / "both", categories=["construction"], chrome=True):
        build_model(TINY, device="meta")
    assert {p.name for p in (tmp_path / "plain").iterdir()} == {"trace.json"}
    assert {p.name for p in (tmp_path / "both").iterdir()} == {"trace.json", "trace.chrome.json"}
    doc = json.loads((tmp_path / "both" / "trace.chrome.json").read_text(encoding="utf-8"))
    assert len(doc["traceEvents"]) > 10


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="chromium not installed (scripts/ensure_chromium.sh)")
@pytest.mark.parametrize("width", [1280, 1920])
def test_the_report_fits_the_window(tmp_path: Path, width: int) -> None:
    """Nothing in the report is wider than a 1280-1920 px window: wide tables scroll inside their
    own box and call-graph labels wrap between words (the page itself never scrolls sideways)."""
    from fixtures.render_support import load

    from tracer.render.report import render_html

    probe = ("<script>window.addEventListener('load', () => document.body.setAttribute('data-overflow', "
             "String(document.documentElement.scrollWidth - document.documentElement.clientWidth)));</script>")
    page = tmp_path / "report.html"
    page.write_text(render_html(load("real")).replace("</body>", probe + "</body>"), encoding="utf-8")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser is not None
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},1000",
                           "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    found = [line for line in proc.stdout.split() if line.startswith('data-overflow="')]
    assert found, proc.stderr[-2000:]
    assert int(found[0].split('"')[1]) <= 0


def test_an_immutable_output_folder_is_refused_before_any_model_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    before = _old_report(out)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(out)], capture_output=True,
                                                        check=False).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a filesystem with the flag)")
    try:
        code = main(["report", TINY, "-o", str(out)])
        line = _one_line(capsys.readouterr().err)
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True, check=False)
    assert code == 2 and "Operation not permitted" in line and str(out) in line
    assert _snapshot(out) == before
