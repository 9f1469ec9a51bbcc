"""``.vscode/launch.json`` opens every walkthrough under the debugger, stepping into SAT.

VS Code reads launch.json as JSON with comments, so the test strips ``//`` comment lines
first. A configuration that names a missing program, an undefined input or task, or
arguments the CLI would reject, fails here rather than in a learner's editor.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
VSCODE = REPO / ".vscode"
SINGLE_PROCESS_ENV = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost"}


def load_jsonc(path: Path) -> Any:
    """JSON with ``//`` comment lines (VS Code's dialect for launch.json and tasks.json)."""
    text = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                     if not line.lstrip().startswith("//"))
    return json.loads(text)


@pytest.fixture(scope="module")
def launch() -> dict[str, Any]:
    return load_jsonc(VSCODE / "launch.json")


def _substitute(text: str, inputs: dict[str, Any]) -> str:
    text = text.replace("${workspaceFolder}", str(REPO))
    return re.sub(r"\$\{input:([^}]+)\}", lambda m: str(inputs[m.group(1)].get("default", "x")), text)


def test_launch_json_parses_and_every_program_exists(launch: dict[str, Any]) -> None:
    configs = launch["configurations"]
    assert configs
    for config in configs:
        name = config["name"]
        assert config["type"] in ("debugpy", "python"), name
        assert config["justMyCode"] is False, f"{name}: justMyCode must be false to step into SAT"
        if config["request"] == "attach":  # a model-parallel rank started with --debug-port
            assert config["connect"]["port"] >= 1024, name
            continue
        assert config["python"] == "${workspaceFolder}/.venv/bin/python", name
        for key, value in SINGLE_PROCESS_ENV.items():
            assert config["env"].get(key) == value, f"{name}: env {key} should be {value!r}"
        if "program" in config:
            if config["program"] == "${file}":
                continue
            program = Path(config["program"].replace("${workspaceFolder}", str(REPO)))
            assert program.is_file(), f"{name}: program {program} does not exist"
        else:
            assert importlib.util.find_spec(config["module"]) is not None, f"{name}: no module {config['module']}"


def test_every_walkthrough_has_a_configuration(launch: dict[str, Any]) -> None:
    programs = {Path(c.get("program", "")).name for c in launch["configurations"]}
    for script in sorted((REPO / "walkthroughs").glob("[0-9][0-9]_*.py")):
        assert script.name in programs, f"no launch configuration for walkthroughs/{script.name}"


def test_model_parallel_ranks_can_be_attached(launch: dict[str, Any]) -> None:
    """One configuration starts 2 ranks with --debug-port P; rank r is attached on P + r, both by a compound."""
    start = next(c for c in launch["configurations"] if "--debug-port" in c.get("args", []))
    args = start["args"]
    base, nproc = int(args[args.index("--debug-port") + 1]), int(args[args.index("--nproc") + 1])
    attach = {c["name"]: c["connect"]["port"] for c in launch["configurations"] if c["request"] == "attach"}
    assert sorted(attach.values()) == [base + r for r in range(nproc)]
    compound = next(c for c in launch["compounds"] if set(c["configurations"]) == set(attach))
    assert compound["name"]


def test_inputs_and_tasks_are_defined(launch: dict[str, Any]) -> None:
    inputs = {i["id"] for i in launch.get("inputs", [])}
    used = set(re.findall(r"\$\{input:([^}]+)\}", json.dumps(launch["configurations"])))
    assert used <= inputs, f"undefined inputs: {sorted(used - inputs)}"
    tasks = {t["label"] for t in load_jsonc(VSCODE / "tasks.json")["tasks"]}
    for config in launch["configurations"]:
        if "preLaunchTask" in config:
            assert config["preLaunchTask"] in tasks, f"{config['name']}: no task {config['preLaunchTask']!r}"


def test_user_checkpoint_configuration_asks_for_paths(launch: dict[str, Any]) -> None:
    """One configuration takes the user's own checkpoint and tokenizer through input prompts."""
    inputs = {i["id"]: i for i in launch["inputs"]}
    own = [c for c in launch["configurations"] if "${input:checkpoint}" in c.get("args", [])]
    assert own, "no configuration for a user's own checkpoint"
    args = own[0]["args"]
    assert "--tokenizer" in args and args[args.index("--tokenizer") + 1] == "${input:tokenizer}"
    assert inputs["checkpoint"]["type"] == inputs["tokenizer"]["type"] == "promptString"


def test_cli_configurations_parse(launch: dict[str, Any]) -> None:
    """The arguments of every ``tracer.cli`` configuration are accepted by cogtrace's parser."""
    from tracer import cli

    inputs = {i["id"]: i for i in launch["inputs"]}
    parser = cli._parser()
    for config in launch["configurations"]:
        if config.get("module") != "tracer.cli":
            continue
        args = [_substitute(a, inputs) for a in config["args"]]
        try:
            parser.parse_args(args)
        except SystemExit as e:  # argparse exits on bad arguments
            pytest.fail(f"{config['name']}: cogtrace rejects {args}: exit {e.code}")


def test_walkthrough_arguments_parse(launch: dict[str, Any]) -> None:
    """Walkthrough configurations pass only options the walkthroughs accept (checked by --help text)."""
    for config in launch["configurations"]:
        program = config.get("program", "")
        if "/walkthroughs/" not in program:
            continue
        source = Path(program.replace("${workspaceFolder}", str(REPO))).read_text(encoding="utf-8")
        common = (REPO / "walkthroughs" / "_common.py").read_text(encoding="utf-8")
        for arg in config["args"]:
            if arg.startswith("--"):
                assert f'"{arg}"' in source + common, f"{config['name']}: unknown option {arg}"


def test_breakpoints_page_matches_the_installed_sat() -> None:
    """docs/breakpoints.md was generated from this SAT: every function's file:line and stop line agree.

    (The call counts need a model run; ``scripts/gen_breakpoints.py --check`` compares those too.)
    """
    import importlib.util as util

    spec = util.spec_from_file_location("gen_breakpoints", REPO / "scripts" / "gen_breakpoints.py")
    assert spec is not None and spec.loader is not None
    gen = util.module_from_spec(spec)
    sys.modules["gen_breakpoints"] = gen  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(gen)
    finally:
        del sys.modules["gen_breakpoints"]
    page = (REPO / "docs" / "breakpoints.md").read_text(encoding="utf-8")
    count = 0
    for _, _, locations in gen.locations():
        for loc in locations:
            name = loc.target.ref.split(":")[1]
            if loc.target.ref.startswith("sat."):
                # SAT is pinned: its lines must match exactly.
                expected = f"| `{name}` | `{gen.shown_path(loc.file)}:{loc.def_line}` | line {loc.stop_line}: "
            else:
                # This repository's own files move with every edit; `make docs` refreshes them.
                expected = f"| `{name}` | `{gen.shown_path(loc.file)}:"
            assert expected in page, f"docs/breakpoints.md is stale for {name}: run make docs"
            count += 1
    assert count >= 25


@pytest.mark.parametrize("page", ["guide.md", "guide.zh.md", "faq.md", "faq.zh.md", "breakpoints.md"])
def test_docs_pages_link_to_files_that_exist(page: str) -> None:
    """Every relative link and image in the guides and FAQs points at a committed file."""
    path = REPO / "docs" / page
    text = path.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not t.startswith(("http://", "https://", "mailto:"))]
    for target in local:
        assert (path.parent / target).exists(), f"{page}: broken link {target}"
    if page.startswith("guide"):
        for diagram in ("calls", "modules", "architecture", "tokens"):
            assert any("diagrams/" in t and diagram in t for t in local), f"{page}: no {diagram} diagram"
