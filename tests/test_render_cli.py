"""``cogtrace render``: every format from a saved trace, one-line errors, no half-written files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures.render_support import TRACES

from tracer.cli import main

FORMATS = ("tree", "modules", "hooks", "steps", "tokens", "dot", "svg", "png", "html", "chrome")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["render", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_writes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    if fmt in ("svg", "png", "html") and shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' not installed")
    out = tmp_path / f"out.{fmt}"
    code, _, err = _run(capsys, str(TRACES["real"]), "--format", fmt, "-o", str(out))
    assert code == 0, err
    data = out.read_bytes()
    assert len(data) > 200
    if fmt == "png":
        assert data.startswith(b"\x89PNG")
    if fmt == "chrome":
        doc = json.loads(data)
        assert {e["cat"] for e in doc["traceEvents"] if "cat" in e} >= {"construction", "module", "hook"}
    assert list(tmp_path.iterdir()) == [out]  # no temporary files left behind


def test_text_to_stdout_and_folder_argument(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(TRACES["synthetic"], folder / "trace.json")
    code, out, _ = _run(capsys, str(folder), "--format", "hooks")
    assert code == 0 and "SAT hook table of model" in out


def test_png_of_the_token_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tokens.png"
    assert _run(capsys, str(TRACES["synthetic"]), "-f", "png", "--diagram", "tokens", "-o", str(out))[0] == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("name, content, message", [
    ("missing.json", None, "no such trace file"),
    ("broken.json", '{"format": "cogvlm-tracer", "schema', "not valid JSON at line 1"),
    ("other.json", '{"hello": 1}', "not a cogvlm-tracer trace"),
    ("future.json", '{"format": "cogvlm-tracer", "schema_version": 99}', "schema_version 99"),
    ("events.json", '{"format": "cogvlm-tracer", "schema_version": 1, "events": [{"id": 1}]}', "missing key"),
    ("binary.json", b"\xff\xfe\x00garbage", "not a text file"),
])
def test_bad_trace_files_give_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                       content: str | bytes | None, message: str) -> None:
    path = tmp_path / name if content is None else _write(tmp_path, name, content)
    code, out, err = _run(capsys, str(path), "--format", "tree")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--format", "png"], "expected -o PATH"),
    (["--format", "svg", "--diagram", "tokens"], "--diagram tokens is a picture"),
    (["--width", "10"], "--width 10"),
])
def test_bad_options(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = _run(capsys, str(TRACES["synthetic"]), *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_output_folder_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, str(TRACES["synthetic"]), "-o", str(tmp_path / "nope" / "x.txt"))
    assert code == 2 and "does not exist" in err


def test_trace_without_token_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(TRACES["synthetic"].read_text())
    data["meta"].pop("token_layout")
    path = _write(tmp_path, "t.json", json.dumps(data))
    code, _, err = _run(capsys, str(path), "--format", "tokens")
    assert code == 2 and "--format tokens: this trace has no data for it" in err and "three masks" in err


def test_failure_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that dies halfway keeps the old file and leaves no temporary file."""
    from tracer import files

    target = tmp_path / "report.html"
    target.write_text("old")

    class Boom(Exception):
        pass

    real_fdopen = files.os.fdopen

    def failing_fdopen(fd: int, mode: str):  # type: ignore[no-untyped-def]
        handle = real_fdopen(fd, mode)
        original = handle.write

        def write(data: bytes) -> int:
            original(data[:10])
            raise Boom("disk full")

        handle.write = write  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(files.os, "fdopen", failing_fdopen)
    with pytest.raises(Boom):
        files.write_atomic(target, "<html>" * 100)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("argv, message", [
    (["--image", "/no/such/image.png"], "no such image file"),
    (["--query", "   "], "empty --query"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0"),
    (["--version", "poetry"], "poetry"),
])
def test_report_bad_input_fails_before_the_model_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    out = tmp_path / "out"
    code = main(["report", "configs/tiny/cogvlm-grounding-generalist", *argv, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()
