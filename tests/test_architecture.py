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
