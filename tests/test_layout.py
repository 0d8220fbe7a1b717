"""The package's structure, as the README describes it: commands in asc/cli, MLflow only in asc/tracking, no import
cycle, and a layout section that matches the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from asc.cli import COMMANDS
from conftest import REPO

PACKAGE = REPO / "asc"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The asc modules ``path`` imports, anywhere in the file (``from asc.data import augment`` -> asc.data.augment)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("asc")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asc") and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known}


def test_no_import_cycle():
    mods = modules()
    graph = {name: imports(path, set(mods)) - {name} for name, path in mods.items()}
    # a package imports its __init__ implicitly: a module's parent packages are part of what it loads
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_mlflow_is_only_used_by_the_tracking_package():
    users = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names) and not name.startswith("asc.tracking"):
                users.append(name)
    assert not users, f"modules outside asc.tracking that import MLflow: {sorted(set(users))}"


def test_every_command_has_its_own_file_and_every_file_is_a_command():
    files = {p.stem for p in (PACKAGE / "cli").glob("*.py")} - {"__init__", "console"}
    assert files == set(COMMANDS)
    for name in COMMANDS:
        tree = ast.parse((PACKAGE / "cli" / f"{name}.py").read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), name
    library = [n for n, p in modules().items() if not n.startswith("asc.cli")
               and re.search(r"^def main\(|argparse\.ArgumentParser\(", p.read_text(), re.M)]
    assert not library, f"library modules that parse command lines: {library}"


def test_readme_layout_section_matches_the_tree():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    block = section[section.index("```") + 3:]
    block = block[:block.index("```")]
    listed = set()
    for line in block.splitlines():
        if line.startswith("asc/"):  # a path, or a folder followed by several file names
            first, *rest = line.split("  ")[0].split()
            listed |= {first} | {first.rsplit("/", 1)[0] + "/" + name for name in rest}
    files = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    packages = {p.parent.relative_to(REPO).as_posix() + "/" for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    assert listed == files | packages, (f"in the tree, not in the README: {sorted((files | packages) - listed)}; "
                                        f"in the README, not in the tree: {sorted(listed - files - packages)}")


def test_scripts_outside_the_package_parse_and_import_what_exists():
    """The benchmarks and experiment scripts run only by hand: each parses, and every name it imports from asc exists
    (a lost indentation in benchmarks/extract_throughput.py went unnoticed until a review)."""
    import importlib

    scripts = sorted((REPO / "benchmarks").rglob("*.py")) + sorted((REPO / "experiments").rglob("*.py"))
    assert len(scripts) > 10
    missing = []
    for path in scripts:
        tree = ast.parse(path.read_text(), filename=str(path))  # a SyntaxError names the file and line
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "asc":
                module = importlib.import_module(node.module)
                missing += [f"{path.relative_to(REPO)}: {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name) and not (  # a name, or a submodule of a package
                                hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{a.name}"))]
    assert not missing, missing
