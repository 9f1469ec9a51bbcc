"""The walkthroughs run, in both languages, straight through and by pressing Enter.

Cost: every walkthrough imports SAT (3–10 s). To stay well under two minutes on two cores:

* English: each script in its own subprocess (``python walkthroughs/0N_*.py --no-pause``),
  all started together by a module fixture, at most ``os.cpu_count()`` at a time;
* Chinese: all seven scripts in *one* subprocess through ``walkthroughs/run_all.py`` (one
  SAT import), started in the same pool;
* pressing Enter: 01 without ``--no-pause``, newlines (or ``q``) fed on stdin, in the same pool.

The checks are on key lines, not whole outputs: the text is for people and will change.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WALKTHROUGHS = REPO / "walkthroughs"
PYTHON = sys.executable
TIMEOUT = 300

# Lines each walkthrough must print in English (a few per script: the facts it exists to show).
EXPECTED_EN: dict[str, list[str]] = {
    "01_config.py": ["Step 1: CogVLMModel.get_args()", "sat/arguments.py:468", "update_args_with_file",
                     "model_config.json", "(490/14)^2 = 1225 image tokens", "Done."],
    "02_construction.py": ["sat/model/base_model.py:", "CogVLMModel.add_mixin('eva', ImageMixin)",
                           "CogVLMModel.del_mixin('mlp')",
                           "in order: add rotary, add lm, add mlp, add eva, del mlp, add mlp, del rotary, add rotary",
                           "EVA2CLIPModel.add_mixin('patch_embedding'", "total: 644,000 parameters"],
    "03_from_pretrained.py": ["sat/training/model_io.py:", "load_checkpoint called: False",
                              "load_checkpoint called: True", "mp_rank_00_model_states.pt"],
    "04_inputs.py": ["(1, 3, 490, 490)", "image_embed_mask 1227 = L+2", "vision_expert_mask 1226 = L+1",
                     "image_rope_mask 1225 = L", "token_layout.png"],
    "05_generation.py": ["auto-regressive -> default", "sat/generation/autoregressive_sampling.py:",
                         "same answer: True"],
    "06_grounding.py": ["a blue circle", "(274, 70, 430, 224)", "output.png", "expected 4 coordinates"],
    "07_full_size_meta.py": ["17,639,685,376", "5,496,929,536", "70.6 GB", "22.0 GB"],
    "08_finetune.py": ["sat/model/finetune/lora2.py:", "ColumnParallelLinear │ LoraLinear",
                       "trainable / total = 7,168 / 595,440", "language LoRA A     │ 0.000e+00",
                       "sat/training/deepspeed_training.py:", "LoRA parameters left = 0"],
    "10_cogagent.py": ["cross_image_pix", "(1, 3, 1120, 1120)", "cross keys/values (B, heads, N, d) = (1, 4, 6400, 8)",
                       "mem_cross cache", "same answer = True", "18,291,033,280"],
}
SCRIPTS = sorted(EXPECTED_EN)
# Language-independent facts that the Chinese run must print too, and its own words.
EXPECTED_ZH = ["步骤 1", "完成", "sat/arguments.py:468", "17,639,685,376", "5,496,929,536", "回答一致：True",
               "image_rope_mask 1225 = L", "18,291,033,280"]


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TMPDIR=str(tmp), PYTHONIOENCODING="utf-8", COLUMNS="120")
    # Generated tiny checkpoints go to the session's private cache, as in conftest.py (the
    # module fixture below runs before conftest's per-test fixture sets COGTRACE_CACHE).
    env["COGTRACE_CACHE"] = str(tmp.parent / "cogtrace-cache")
    # Neither language must come from the test machine's locale: --lang decides.
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        env.pop(var, None)
    return env


def _run(args: list[str], tmp: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, *args], cwd=REPO, env=_env(tmp), input=stdin, capture_output=True,
                          text=True, encoding="utf-8", timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL if stdin is None else None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    """Every script in English, all of them in Chinese, and the two keyboard runs: started
    together once per module (each pays one SAT import; in parallel they share the cores)."""
    tmp = tmp_path_factory.mktemp("walkthroughs")
    jobs: dict[str, tuple[list[str], str | None]] = {}
    for name in SCRIPTS:
        extra = ["--out", str(tmp / name[:2])] if name[:2] in ("04", "06") else []
        jobs[name] = ([str(WALKTHROUGHS / name), "--no-pause", "--lang", "en", *extra], None)
    jobs["zh"] = ([str(WALKTHROUGHS / "run_all.py"), "--no-pause", "--lang", "zh"], None)
    # Without --no-pause: Enter steps through; "q" at a pause quits.
    jobs["enter"] = ([str(WALKTHROUGHS / "01_config.py"), "--lang", "en"], "\n" * 10)
    jobs["quit"] = ([str(WALKTHROUGHS / "01_config.py"), "--lang", "zh"], "\nq\n")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {key: pool.submit(_run, args, tmp, stdin) for key, (args, stdin) in jobs.items()}
        yield {key: future.result() for key, future in futures.items()}


def _failure(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-3000:]}\n--- stderr (tail)\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_walkthrough_runs_in_english(runs: dict[str, subprocess.CompletedProcess[str]], name: str) -> None:
    proc = runs[name]
    assert proc.returncode == 0, _failure(proc)
    for line in EXPECTED_EN[name]:
        assert line in proc.stdout, f"{name}: missing {line!r}\n{_failure(proc)}"
    assert "📍" in proc.stdout  # every walkthrough shows SAT source locations
    assert "Traceback" not in proc.stderr


def test_every_walkthrough_runs_in_chinese(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = runs["zh"]
    assert proc.returncode == 0, _failure(proc)
    for name in SCRIPTS:
        assert f"### {name}: ok" in proc.stdout, f"{name} failed in Chinese\n{_failure(proc)}"
    for line in EXPECTED_ZH:
        assert line in proc.stdout, f"missing {line!r}\n{_failure(proc)}"
    assert "Step 1:" not in proc.stdout  # no English step headers leak into the Chinese run


def test_source_locations_point_at_real_lines(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """Every ``📍 name  /path/file.py:N`` printed is a line of that file that starts a def or class."""
    seen = 0
    for name in SCRIPTS:
        for path, line in re.findall(r"📍 \S+\s+(/\S+\.py):(\d+)", runs[name].stdout):
            text = Path(path).read_text(encoding="utf-8").splitlines()[int(line) - 1].strip()
            assert text.startswith(("def ", "class ", "@", "async def ")), f"{path}:{line} is {text!r}"
            seen += 1
    assert seen >= 20


def test_grounding_writes_output_png_outside_the_cwd(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    match = re.search(r"output\.png = (\S+)", runs["06_grounding.py"].stdout)
    assert match, _failure(runs["06_grounding.py"])
    png = Path(match.group(1))
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (REPO / "output.png").exists()


def test_walkthroughs_leave_no_temporary_folders(runs: dict[str, subprocess.CompletedProcess[str]],
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    """The Chinese run writes 04's and 06's pictures without --out: into one folder of the cache,
    reused by every run, never a new /tmp/cogtrace-* folder per run (TMPDIR is the test's tmp)."""
    assert runs["zh"].returncode == 0, _failure(runs["zh"])
    assert list(tmp_path_factory.getbasetemp().glob("walkthroughs*/cogtrace-*")) == []
    assert (tmp_path_factory.getbasetemp() / "cogtrace-cache" / "walkthroughs" / "06" / "output.png").is_file()


def test_pressing_enter_steps_through(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """Without --no-pause, 01 waits for Enter between steps; newlines on stdin step it through."""
    proc = runs["enter"]
    assert proc.returncode == 0, _failure(proc)
    steps = proc.stdout.count("── Step ")
    prompts = proc.stdout.count("[Enter ⏎]")
    assert steps == 5 and prompts == steps - 1, proc.stdout[-2000:]  # a pause before each step after the first
    assert "Done." in proc.stdout


def test_q_quits_at_a_pause(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = runs["quit"]
    assert proc.returncode == 0, _failure(proc)
    assert "已退出" in proc.stdout and "步骤 2" in proc.stdout and "步骤 3" not in proc.stdout


# ---------------------------------------------------------------------------------------------
# The shared machinery, in-process (cheap)


@pytest.fixture()
def common(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.syspath_prepend(str(WALKTHROUGHS))
    import _common

    return _common


@pytest.mark.parametrize(("env", "lang"), [
    ({}, "en"),
    ({"LANG": "zh_CN.UTF-8"}, "zh"),
    ({"LANG": "en_US.UTF-8", "LC_ALL": "zh_TW.UTF-8"}, "zh"),  # LC_ALL wins over LANG
    ({"LANG": "zh_CN.UTF-8", "LC_ALL": "C"}, "en"),
    ({"LC_MESSAGES": "zh_CN", "LANG": "de_DE"}, "zh"),
    ({"LANG": ""}, "en"),
])
def test_default_lang_follows_the_locale(common: object, env: dict[str, str], lang: str) -> None:
    assert common.default_lang(env) == lang  # type: ignore[attr-defined]


def test_namespace_diff(common: object) -> None:
    rows = common.namespace_diff({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 4})  # type: ignore[attr-defined]
    assert rows == [("b", "2", "5"), ("c", "3", "—"), ("d", "—", "4")]


def test_eof_on_stdin_stops_pausing(common: object) -> None:
    import io

    out = io.StringIO()
    w = common.Walkthrough(lang="en", pause=True, stream=out, stdin=io.StringIO(""))  # type: ignore[attr-defined]
    w.step("one", "一")
    w.step("two", "二")  # EOF at this pause: no one is there, so run on
    w.step("three", "三")
    assert not w.pausing and out.getvalue().count("[Enter ⏎]") == 1


@pytest.mark.parametrize("name", ["01_config.py", "02_construction.py", "03_from_pretrained.py", "04_inputs.py"])
def test_bad_config_is_one_line_before_importing_sat(tmp_path: Path, name: str) -> None:
    proc = _run([str(WALKTHROUGHS / name), "--no-pause", "--config", str(tmp_path / "nowhere")], tmp_path)
    assert proc.returncode == 2
    assert "no such config" in proc.stderr and "Traceback" not in proc.stderr
    assert "Importing" not in proc.stdout  # stopped before the slow SAT import
