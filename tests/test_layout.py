"""The engine's imports run one way: no cycle between its modules, subpackages in the layout's order
(docs/layout.md), and no Streamlit anywhere in it. Lazy imports inside functions count: they are cycles too."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "explorer"
LAYERS = ["core", "checkpoints", "weights", "evaluation", "activations", "demo", "distributed", "results"]


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ENGINE) -> dict[str, set[str]]:
    """Module -> the engine modules it imports anywhere in its file (a `from pkg import name` naming a
    submodule points at that submodule, else at the package)."""
    modules = {_module_name(path, root): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_sees_a_lazy_cycle(tmp_path):
    package = tmp_path / "explorer"
    (package / "results").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "results" / "__init__.py").write_text("")
    (package / "results" / "a.py").write_text("from explorer.results.b import thing\n")
    (package / "results" / "b.py").write_text("def thing():\n    from explorer.results import a\n")
    (package / "results" / "c.py").write_text("from . import a\n")
    graph = import_graph(package)
    assert graph["explorer.results.c"] == {"explorer.results.a"}
    assert cycles(graph) == [["explorer.results.a", "explorer.results.b"]]


def test_no_import_cycle_in_the_engine():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(component) for component in found)


def test_subpackages_import_only_those_above_them():
    wrong = []
    for module, targets in import_graph().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in LAYERS:
            continue
        for target in targets:
            target_parts = target.split(".")
            if len(target_parts) > 1 and target_parts[1] in LAYERS and \
                    LAYERS.index(target_parts[1]) > LAYERS.index(parts[1]):
                wrong.append(f"{module} imports {target}")
            if target_parts[1:2] == ["cli"]:
                wrong.append(f"{module} imports the CLI")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_engine_never_imports_streamlit():
    code = ("import sys, explorer.cli, explorer.results.report, explorer.results.html_report, "
            "explorer.results.precompute; assert 'streamlit' not in sys.modules, 'streamlit imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
