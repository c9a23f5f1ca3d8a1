"""A lab's own cell model: a NEURON template (hoc or Python) with its own mechanisms.

A template is code, and loading it runs it. It is therefore instantiated in a throw-away process
first (as morphology files are parsed, simulations.morphology): a template whose hoc stops, or
that crashes its process, leaves this process's NEURON usable, and the error it printed is named.
Then, in this process: the lab's mechanisms with elmpipe's synapses (one set per process, see
simulations.mechanisms), the files the template expects loaded first, the template, one instance.
Everything elmpipe does with a cell afterwards needs only the instance's soma, basal, apical and
axon sections, found through the template's section lists.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from elmpipe.errors import EnvironmentProblem, InputError
from elmpipe.settings import StrictModel
from simulations._child import run_in_child
from simulations._neuron import captured_c_output, hoc, neuron_module
from simulations.mechanisms import (
    MECHANISM_DIR,
    load_mechanisms,
    mechanisms_sha256,
    source_files,
    with_elmpipe_synapses,
)

#: where each region is looked for on an instance, first found wins: the section lists of Hay
#: et al.'s, Blue Brain's and Allen's templates, then the section arrays of hoc templates
DEFAULT_SECTION_LISTS: dict[str, tuple[str, ...]] = {
    "soma": ("somatic", "soma"),
    "basal": ("basal", "dend"),
    "apical": ("apical", "apic"),
    "axon": ("axonal", "axon"),
}

#: a lab's cell model argument that names a file of one of these kinds is its morphology
MORPHOLOGY_SUFFIXES = (".asc", ".swc", ".h5")


class CellModelError(InputError):
    """A lab's cell model (template, its files, its mechanisms) cannot be used."""


class LabSynapse(StrictModel):
    """A synapse mechanism of the lab's (a POINT_PROCESS that takes NetCon events of weight 1),
    used instead of elmpipe's AmpaNmda or GabaA, with its parameters."""

    mechanism: str = Field(description="POINT_PROCESS name, e.g. ProbAMPANMDA_EMS")
    parameters: dict[str, float] = Field(default_factory=dict, description="set on every one")


@dataclass(frozen=True)
class TemplateModel:
    """Everything that makes a lab's cell model, as :class:`simulations.cell.CellSpec` gives it."""

    path: Path
    name: str
    args: tuple[str | int | float, ...] = ()
    preload: tuple[Path, ...] = ()
    mechanisms: Path | None = None
    section_lists: tuple[tuple[str, str], ...] = ()  # (region, attribute) pairs given by the lab

    def mechanism_files(self) -> list[Path]:
        """The lab's .mod files and elmpipe's synapses; elmpipe's own set without a folder."""
        if self.mechanisms is None:
            return source_files(MECHANISM_DIR)
        return with_elmpipe_synapses(self.mechanisms)

    def to_json(self) -> str:
        return json.dumps(
            {
                "path": str(self.path),
                "name": self.name,
                "args": list(self.args),
                "preload": [str(p) for p in self.preload],
                "mechanisms": None if self.mechanisms is None else str(self.mechanisms),
                "section_lists": [list(pair) for pair in self.section_lists],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TemplateModel:
        data = json.loads(text)
        return cls(
            path=Path(data["path"]),
            name=data["name"],
            args=tuple(data["args"]),
            preload=tuple(Path(p) for p in data["preload"]),
            mechanisms=None if data["mechanisms"] is None else Path(data["mechanisms"]),
            section_lists=tuple((r, a) for r, a in data["section_lists"]),
        )

    def files(self) -> list[Path]:
        """The model's own files (template, preloads, and arguments that name a file)."""
        named = [Path(a) for a in self.args if isinstance(a, str) and Path(a).is_file()]
        return [self.path, *self.preload, *named]

    def morphology(self) -> Path | None:
        """The morphology file among the arguments, if one is named."""
        return next((p for p in self.files()[1:] if p.suffix.lower() in MORPHOLOGY_SUFFIXES), None)

    def record(self) -> dict[str, Any]:
        """What a dataset records about the model: its files by content, its arguments and its
        mechanisms (each file's hash and the set's)."""
        files = self.mechanism_files()
        return {
            "template": str(self.path),
            "name": self.name,
            "args": list(self.args),
            "preload": [str(p) for p in self.preload],
            "files_sha256": {str(p): _sha256(p) for p in self.files()},
            "mechanisms": None if self.mechanisms is None else str(self.mechanisms),
            "mechanism_files_sha256": {p.name: _sha256(p) for p in files},
            "mechanisms_sha256": mechanisms_sha256(files),
            "section_lists": dict(self.section_lists),
        }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_files(model: TemplateModel) -> None:
    """Each file the model names exists, and the template is a hoc or Python file."""
    if model.path.suffix not in (".hoc", ".py"):
        raise CellModelError(f"template {model.path}: a .hoc or .py file is expected")
    for path, what in [(model.path, "template"), *((p, "preload file") for p in model.preload)]:
        if not path.is_file():
            raise CellModelError(f"{what} not found: {path}")
    if model.mechanisms is not None and not model.mechanisms.is_dir():
        raise CellModelError(f"mechanisms folder not found: {model.mechanisms}")


# -- instantiation ---------------------------------------------------------------------------------


def _hoc_error(printed: str) -> str:
    """What hoc printed, from its first complaint (the line, the spot, the file): its later
    lines only trace the calls that led there."""
    lines = [line.rstrip() for line in printed.splitlines() if line.strip()]
    first = next(
        (i for i, line in enumerate(lines) if "error" in line.lower() or "NEURON:" in line), None
    )
    return "\n".join(lines[-6:] if first is None else lines[first : first + 4])


def _load_hoc(path: Path, what: str) -> None:
    h = hoc()
    with captured_c_output() as output:
        try:
            loaded = h.load_file(str(path))
        except RuntimeError:
            loaded = 0
    if not loaded:
        raise CellModelError(f"{what} {path} failed to load:\n{_hoc_error(output[0])}".rstrip())


def _factory(model: TemplateModel) -> Any:
    if model.path.suffix == ".hoc":
        _load_hoc(model.path, "template")
        h = hoc()
        if not hasattr(h, model.name):
            raise CellModelError(f"{model.path} defines no template named {model.name!r}")
        return getattr(h, model.name)
    digest = hashlib.sha256(str(model.path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"elmpipe_cell_model_{digest}", model.path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a lab's code: whatever it raises is the lab's problem, named
        raise CellModelError(
            f"template {model.path} failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(module, model.name):
        raise CellModelError(f"{model.path} defines no class or function named {model.name!r}")
    return getattr(module, model.name)


def _sections(instance: Any, region: str, names: tuple[str, ...], model: TemplateModel) -> list:
    for name in names:
        try:
            found = getattr(instance, name)
        except (AttributeError, LookupError, RuntimeError):
            continue
        if isinstance(found, neuron_module().nrn.Section):
            return [found]
        try:
            return list(found)
        except TypeError:
            continue
    if region == "axon":
        return []  # an axon is optional: the protocol neither records nor drives it
    raise CellModelError(
        f"{model.name} (from {model.path}) has none of {', '.join(names)} for its {region} "
        f"sections; name its section list: section_lists: {{{region}: NAME}}"
    )


def instantiate(model: TemplateModel) -> tuple[Any, dict[str, list]]:
    """Load the model's mechanisms and files, make one instance: (instance, sections by region).

    Run :func:`check_in_child` first: a template that fails here may leave hoc unusable.
    """
    check_files(model)
    load_mechanisms(model.mechanism_files())
    for path in model.preload:
        _load_hoc(path, "preload file")
    factory = _factory(model)
    with captured_c_output() as output:
        try:
            instance = factory(*model.args)
            failed: Exception | None = None
        except Exception as exc:  # hoc's RuntimeError or anything a Python template raises
            failed = exc
    if failed is not None:
        printed = _hoc_error(output[0]) or f"{type(failed).__name__}: {failed}"
        raise CellModelError(
            f"{model.name}({', '.join(map(repr, model.args))}) from {model.path} failed:\n{printed}"
        ) from failed
    given = dict(model.section_lists)
    sections = {
        region: _sections(instance, region, (given[region],) if region in given else names, model)
        for region, names in DEFAULT_SECTION_LISTS.items()
    }
    return instance, sections


# -- the throw-away process ------------------------------------------------------------------------

_checked: set[str] = set()


def _check_key(model: TemplateModel) -> str:
    digest = hashlib.sha256(model.to_json().encode())
    for path in model.files():
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_in_child(model: TemplateModel, timeout_s: float = 600) -> dict[str, int]:
    """Instantiate the model in a child process first; return its section counts by region.

    The mechanisms are built here first (with a progress bar, cached), so the child only loads
    them. Models that instantiate are remembered by content for the life of the process.
    """
    check_files(model)
    from simulations.mechanisms import build_mechanisms

    build_mechanisms(model.mechanism_files())
    try:
        child = run_in_child("simulations.template", "_report", model.to_json(), timeout_s)
    except subprocess.TimeoutExpired:
        raise CellModelError(
            f"{model.name} from {model.path} did not instantiate within {timeout_s:g} s"
        ) from None
    lines = child.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    if report is None:
        how = f"signal {-child.returncode}" if child.returncode < 0 else f"exit {child.returncode}"
        detail = _hoc_error(child.stderr or child.stdout)
        raise CellModelError(
            f"{model.name} from {model.path} crashed the process that loaded it ({how}):\n"
            f"{detail}".rstrip()
        )
    if "problem" in report:
        raise CellModelError(report["problem"])
    _checked.add(_check_key(model))
    return report["sections"]


def checked_before(model: TemplateModel) -> bool:
    check_files(model)  # a missing file is named before anything reads it
    return _check_key(model) in _checked


def _report(model_json: str) -> None:
    """Child-process side of :func:`check_in_child`: instantiate, print one JSON line."""
    model = TemplateModel.from_json(model_json)
    try:
        _, sections = instantiate(model)
        report: dict[str, Any] = {"sections": {r: len(s) for r, s in sections.items()}}
    except (InputError, EnvironmentProblem) as exc:  # a bad model, its mechanisms' build
        report = {"problem": str(exc)}
    except Exception as exc:
        report = {"problem": f"{model.name} from {model.path}: {type(exc).__name__}: {exc}"}
    sys.stdout.flush()
    print(json.dumps(report), flush=True)
