"""The core names no model: tracer/*.py and tracer/render/ import no model package, and the
core's import graph has no cycle. Models enter only through tracer/adapters.py's registry
(by name, as a string) — see the README's "Adding a model"."""

from __future__ import annotations

import ast
from pathlib import Path

import tracer
from tracer.adapters import REGISTRY

ROOT = Path(tracer.__file__).parent
MODEL_PACKAGES = {entry.package.split(".")[1] for entry in REGISTRY}  # {'cogvlm', ...}
CORE = sorted([*ROOT.glob("*.py"), *(ROOT / "render").glob("*.py")])


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions, resolved to absolute names."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def test_core_imports_no_model_package() -> None:
    assert MODEL_PACKAGES >= {"cogvlm"}
    offenders = {}
    for path in CORE:
        bad = sorted(name for name in _imports(path)
                     if name.split(".")[0] == "tracer" and len(name.split(".")) > 1
                     and name.split(".")[1] in MODEL_PACKAGES)
        if bad:
            offenders[str(path.relative_to(ROOT.parent))] = bad
    assert offenders == {}


def test_core_import_graph_has_no_cycle() -> None:
    core = {_module(p): p for p in CORE}
    graph = {name: sorted({m for m in _imports(p) if m in core and m != name}) for name, p in core.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycle: list[str] = []

    def visit(name: str, path: list[str]) -> bool:
        state[name] = 1
        for dep in graph[name]:
            if state.get(dep) == 1:
                cycle.extend(path[path.index(dep):] + [dep] if dep in path else [name, dep])
                return True
            if dep not in state and visit(dep, [*path, dep]):
                return True
        state[name] = 2
        return False

    for name in sorted(graph):
        if name not in state and visit(name, [name]):
            break
    assert cycle == [], " -> ".join(cycle)


def test_a_report_folder_owns_every_view_any_model_writes() -> None:
    """A re-run of `cogtrace report` for another model replaces the old model's views (CogAgent's
    cross view, a fine-tuning trace's loss curve) instead of keeping them as the user's files."""
    from tracer.commands.report import report_files

    owned = report_files()
    assert {"report.html", "trace.json", "architecture.svg", "tokens.png", "cross.txt", "training.txt",
            "loss.png"} <= owned
    assert "notes.txt" not in owned
