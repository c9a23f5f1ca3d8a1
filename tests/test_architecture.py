"""The house rules of the layering, checked on the source: a forbidden import fails here.

- ``surrogate`` never imports ``simulations`` (the stages meet only in the dataset contract);
- ``elmpipe`` (the shared core) imports none of the stages, nor NEURON, nor PyTorch;
- ``simulations`` and ``surrogate`` never import ``pipelines`` (orchestration sits on top);
- NEURON is imported in exactly one module, ``simulations/_neuron.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("elmpipe", "simulations", "surrogate", "pipelines")

FORBIDDEN = {
    "elmpipe": ("simulations", "surrogate", "pipelines", "neuron", "torch"),
    "simulations": ("surrogate", "pipelines"),
    "surrogate": ("simulations", "pipelines", "neuron"),
    "pipelines": ("neuron",),
}
NEURON_HOME = Path("simulations/_neuron.py")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in a file, wherever it stands (also lazy ones)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def source_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_forbidden_imports(package):
    offences = []
    for path in source_files(package):
        relative = path.relative_to(ROOT)
        for line, module in imported_modules(path):
            if module in FORBIDDEN[package] and not (
                module == "neuron" and relative == NEURON_HOME
            ):
                offences.append(f"{relative}:{line} imports {module}")
    assert not offences, "layering broken:\n" + "\n".join(offences)


def test_neuron_is_imported_in_one_module_only():
    homes = {
        path.relative_to(ROOT)
        for package in PACKAGES
        for path in source_files(package)
        if any(module == "neuron" for _, module in imported_modules(path))
    }
    assert homes == {NEURON_HOME}


def test_the_checker_sees_lazy_imports(tmp_path):
    """A check that could not fail would prove nothing: an import inside a function is seen."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from simulations.cell import Cell\n    import neuron.h\n")
    assert imported_modules(sample) == [(2, "simulations"), (3, "neuron")]


#: the house style's longest function, in lines of code (its docstring aside: a command's
#: docstring is its --help text)
MAX_FUNCTION_LINES = 60


def function_lengths(path: Path) -> dict[str, int]:
    """Lines of code of every function in a file (docstring lines not counted)."""
    lengths = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    lines -= first.end_lineno - first.lineno + 1
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            lengths[f"{where}:{node.lineno} {node.name}"] = lines
    return lengths


def test_no_function_is_longer_than_the_house_style_allows():
    long = {
        where: lines
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for where, lines in function_lengths(path).items()  # file:line name
        if lines > MAX_FUNCTION_LINES
    }
    assert not long, f"split these into named steps: {long}"


def test_the_length_count_leaves_docstrings_out(tmp_path):
    source = tmp_path / "f.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(3))
    source.write_text(f'def f():\n    """Why,\n    briefly."""\n{body}\n')
    assert function_lengths(source) == {"f.py:1 f": 4}
