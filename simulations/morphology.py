"""Read reconstructed morphologies (Neurolucida ASC, SWC, Blue Brain HDF5 v1/v2) and check them.

Two libraries, each for what it is trusted with:

- **MorphIO** (the field's reader) parses and validates every format and gives the precise
  reason when a file is broken; elmpipe then checks what a pyramidal-cell model relies on: one
  soma, every neurite connected to it, no dendrite that starts far from it ("dangling"), finite
  coordinates and diameters of a plausible size (µm), a basal and an apical tree.
- **NEURON's Import3d** builds the sections, as it always has: from the file's own bytes for ASC,
  from the same samples without blank lines and with ids numbered 1, 2, … for SWC (Import3d
  stops at a blank line and crashes on huge ids), so the Hay cell's and the built-in cell's
  sections and segments are exactly what they were. HDF5 files are first written by MorphIO's
  writer as ASC (contour soma) or SWC (any other soma); HDF5 v2 files, which MorphIO no longer
  reads, are first rewritten as v1 with h5py.

Import3d gets its file under an ASCII name in a temporary folder (it cannot open a path with
"ü"), and every file it has not seen before is first built by Import3d in a throw-away child
process: Import3d's Neurolucida reader leaves the hoc interpreter unusable after a syntax error,
and some files make Import3d crash the process outright. A failed load therefore never breaks
later cells and never ends in a segfault.

Dendrite trees are numbered in file order (0, 1, …, axons not counted). A file whose tags do not
say which tree is apical (an ASC with every tree tagged ``(Dendrite)``) is loaded with
``apical_trees=[k]``: the named trees become apical, every other dendrite tree basal.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from elmpipe.errors import InputError
from simulations._child import run_in_child
from simulations._neuron import captured_c_output, hoc

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_MORPHOLOGY = DATA_DIR / "default_l5pc.swc"

#: file suffix → what it is
FORMATS = {
    ".asc": "Neurolucida ASCII",
    ".swc": "SWC",
    ".h5": "Blue Brain HDF5 v1/v2",
}

#: file suffix → Import3d reader class (HDF5 reaches Import3d as ASC or SWC)
READERS = {".asc": "Import3d_Neurolucida3", ".swc": "Import3d_SWC_read"}

#: SWC structure identifiers Import3d maps onto the section lists we use
SWC_TYPES = {1: "soma", 2: "axon", 3: "basal dendrite", 4: "apical dendrite"}

#: Plausibility bounds (µm): a reconstruction in micrometres fits in 10 cm and nothing in it is
#: wider than 1 mm. Beyond these a file is in other units or broken (1e30, a radius of 1e9).
MAX_COORDINATE_UM = 1e5
MAX_DIAMETER_UM = 1000.0

#: A dendrite whose first point lies farther than this beyond the soma's outline is "dangling":
#: not attached to the soma as traced (NeuroM's criterion, ``has_no_dangling_branch``).
DANGLING_GAP_UM = 12.0

#: SWC sample ids elmpipe reads (MorphIO's limit, 2**32 - 1)
MAX_SWC_ID = 4294967295

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class MorphologyError(InputError):
    """A morphology file is missing, unreadable, or unusable for an L5PC model."""


def default_morphology_path() -> Path:
    """The built-in procedurally generated L5PC-like cell (see docs/cell.md)."""
    return DEFAULT_MORPHOLOGY


# -- files ---------------------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MorphologyError(f"morphology file not found: {path}")
    if not path.is_file():
        raise MorphologyError(f"morphology path is not a file: {path}")
    if path.suffix.lower() not in FORMATS:
        raise MorphologyError(
            f"unknown morphology format {path.suffix!r} for {path}: elmpipe reads "
            + ", ".join(f"{suffix} ({what})" for suffix, what in FORMATS.items())
        )
    if path.stat().st_size == 0:
        raise MorphologyError(f"morphology file is empty: {path}")


# -- SWC -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SwcSample:
    line: int
    ident: int
    kind: int
    parent: int
    fields: tuple[str, ...]  # the seven fields as written (coordinates keep their digits)


def _integer(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _swc_numbers(fields: list[str], line: str, where: str) -> tuple[int, int, int]:
    """One sample line's id, type and parent, after checking its seven fields: integers where
    SWC wants them, finite coordinates, a radius that is not negative."""
    if len(fields) != 7:
        raise MorphologyError(
            f"could not parse morphology {where}: expected 7 fields "
            f"(id type x y z radius parent), found {len(fields)}: {line.strip()!r}"
        )
    try:
        x, y, z, radius = (float(v) for v in fields[2:6])
    except ValueError:
        raise MorphologyError(
            f"could not parse morphology {where}: non-numeric field in {line.strip()!r}"
        ) from None
    integers = []
    for name, value in (("id", fields[0]), ("type", fields[1]), ("parent", fields[6])):
        try:
            integers.append(_integer(value))
        except (ValueError, OverflowError):
            raise MorphologyError(
                f"could not parse morphology {where}: the {name} field {value!r} is not an integer"
            ) from None
    ident, kind, parent = integers
    if not all(map(math.isfinite, (x, y, z, radius))):
        raise MorphologyError(f"could not parse morphology {where}: non-finite coordinate")
    if radius < 0:
        raise MorphologyError(
            f"could not parse morphology {where}: sample {ident} has a negative radius "
            f"({fields[5]} µm)"
        )
    return ident, kind, parent


def read_swc(path: Path) -> list[SwcSample]:
    """Parse and check every sample line of an SWC file (blank lines and ``#`` comments skip).

    Import3d skips lines it cannot parse, stops at blank lines and crashes the process on a
    parent id that does not exist, on a fractional structure type or on ids near 1e15, so every
    line is checked here: seven numeric fields; integer id, type and parent; finite
    coordinates; radii that are not negative; unique ids that increase down the file; parents
    defined earlier; structure types elmpipe knows; one soma, with every other sample connected
    to it.
    """
    samples: list[SwcSample] = []
    by_id: dict[int, SwcSample] = {}
    unknown: dict[int, int] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path}, line {number}"
        ident, kind, parent = _swc_numbers(fields, line, where)
        if not 0 <= ident <= MAX_SWC_ID:
            raise MorphologyError(
                f"could not parse morphology {where}: sample id {ident} is outside 0 … "
                f"{MAX_SWC_ID}, the ids SWC readers accept (renumber the samples)"
            )
        if ident in by_id:
            raise MorphologyError(
                f"could not parse morphology {where}: duplicate sample id {ident}"
            )
        if samples and ident < samples[-1].ident:
            raise MorphologyError(
                f"could not parse morphology {where}: sample ids must increase down the file "
                f"(sort the SWC so that {ident} comes before {samples[-1].ident})"
            )
        if parent != -1 and parent not in by_id:
            raise MorphologyError(
                f"could not parse morphology {where}: parent {parent} of sample {ident} is not "
                "defined on an earlier line"
            )
        if kind not in SWC_TYPES:
            unknown.setdefault(kind, number)
        sample = SwcSample(number, ident, kind, parent, tuple(fields))
        samples.append(sample)
        by_id[ident] = sample
    if not samples:
        raise MorphologyError(f"could not parse morphology {path}: no samples found")
    if unknown:
        where = ", ".join(f"type {k} (first on line {n})" for k, n in sorted(unknown.items()))
        raise MorphologyError(
            f"{path}: unsupported SWC structure types {where}; elmpipe uses "
            + ", ".join(f"{k} = {v}" for k, v in SWC_TYPES.items())
        )
    _check_swc_tree(path, samples, by_id)
    return samples


def _check_swc_tree(path: Path, samples: list[SwcSample], by_id: dict[int, SwcSample]) -> None:
    """One soma, and every other sample connected to it."""
    soma_roots = [s for s in samples if s.kind == 1 and s.parent == -1]
    for sample in samples:
        where = f"{path}, line {sample.line}"
        parent = by_id.get(sample.parent)
        if sample.kind == 1 and parent is not None and parent.kind != 1:
            raise MorphologyError(
                f"{where}: soma sample {sample.ident} is the child of {SWC_TYPES[parent.kind]} "
                f"sample {parent.ident}; the soma must be the root of the cell"
            )
        if sample.kind != 1 and sample.parent == -1 and soma_roots:
            raise MorphologyError(
                f"{where}: {SWC_TYPES[sample.kind]} sample {sample.ident} has parent -1: a "
                "neurite not connected to the soma (a disconnected component); give it the id "
                "of the sample it grows from, or remove it"
            )
    if len(soma_roots) > 1:
        second = soma_roots[1]
        raise MorphologyError(
            f"{path}, line {second.line}: a second soma (sample {second.ident}, parent -1) not "
            f"connected to the first (sample {soma_roots[0].ident}, line {soma_roots[0].line}); "
            "a file must hold one cell with one soma"
        )


def _swc_for_import3d(samples: list[SwcSample], retype: dict[int, int]) -> str:
    """The samples as Import3d reads them: no blank lines or comments, ids 1, 2, … in file order
    (same order, same tree), coordinates and radii exactly as written."""
    number = {s.ident: i for i, s in enumerate(samples, start=1)}
    lines = []
    for s in samples:
        kind = retype.get(s.ident, s.kind)
        parent = number[s.parent] if s.parent != -1 else -1
        lines.append(" ".join([str(number[s.ident]), str(kind), *s.fields[2:6], str(parent)]))
    return "\n".join(lines) + "\n"


def _swc_trees(samples: list[SwcSample]) -> list[list[SwcSample]]:
    """Neurites in file order of their first sample: the samples of each."""
    kind = {s.ident: s.kind for s in samples}
    tree_of: dict[int, int] = {}
    trees: list[list[SwcSample]] = []
    for s in samples:
        if s.kind == 1:
            continue
        if s.parent == -1 or kind[s.parent] == 1:
            tree_of[s.ident] = len(trees)
            trees.append([s])
        else:
            tree_of[s.ident] = tree_of[s.parent]
            trees[tree_of[s.ident]].append(s)
    return trees


# -- ASC -----------------------------------------------------------------------------------------


def _check_asc(path: Path) -> None:
    """Check that the Neurolucida file's parentheses balance (Import3d hangs on a truncated one)."""
    depth = 0
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        in_string = False
        for char in line:
            if char == '"':
                in_string = not in_string
            elif in_string:
                continue
            elif char == ";":
                break  # comment to end of line
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth < 0:
                    raise MorphologyError(
                        f"could not parse morphology {path}, line {number}: unmatched ')'"
                    )
    if depth != 0:
        raise MorphologyError(
            f"could not parse morphology {path}: {depth} '(' never closed (is the file truncated?)"
        )


_ASC_TAG = re.compile(r"\(\s*(Dendrite|Apical)\s*\)", re.IGNORECASE)


def _asc_tree_tags(text: str) -> list[tuple[int, int, str]]:
    """(start, end, tag) of the ``(Dendrite)``/``(Apical)`` token of each top-level tree, in file
    order (strings and ``;`` comments skipped)."""
    tags: list[tuple[int, int, str]] = []
    depth, i, tagged = 0, 0, False
    while i < len(text):
        char = text[i]
        if char == '"':
            i = text.find('"', i + 1)
            if i < 0:
                break
        elif char == ";":
            i = text.find("\n", i)
            if i < 0:
                break
        elif char == "(":
            if depth == 0:
                tagged = False
            elif depth == 1 and not tagged and (match := _ASC_TAG.match(text, i)):
                tags.append((match.start(1), match.end(1), match.group(1)))
                tagged = True
            depth += 1
        elif char == ")":
            depth -= 1
        i += 1
    return tags


# -- HDF5 ----------------------------------------------------------------------------------------

#: h5 v2 stages, the last processing step first; each reads its points and its structure
H5V2_STAGES = (("repaired", "repaired"), ("unraveled", "raw"), ("raw", "raw"))


def _h5_as_v1(path: Path, work: Path) -> Path:
    """An HDF5 v1 file MorphIO can read: ``path`` itself, or its v2 content rewritten as v1 (the
    last stage the file holds: repaired, else unraveled, else raw)."""
    import h5py

    if not h5py.is_hdf5(path):
        raise MorphologyError(f"could not read morphology {path}: it is not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            if "neuron1" not in f:
                return path
            group = f["neuron1"]
            for stage, structure in H5V2_STAGES:
                if f"{stage}/points" in group and f"structure/{structure}" in group:
                    points = np.asarray(group[f"{stage}/points"], dtype=np.float64)
                    offsets = np.asarray(group[f"structure/{structure}"])
                    types = np.asarray(group["structure/sectiontype"]).reshape(-1)
                    break
            else:
                raise MorphologyError(
                    f"could not read morphology {path}: an HDF5 v2 file (group /neuron1) without "
                    "<stage>/points and structure/<stage> for any stage (repaired, unraveled, raw)"
                )
    except (OSError, KeyError) as exc:
        raise MorphologyError(f"could not read morphology {path}: {exc}") from None
    if offsets.ndim != 2 or offsets.shape[1] != 2 or len(types) != len(offsets):
        raise MorphologyError(
            f"could not read morphology {path}: HDF5 v2 structure of shape {offsets.shape} with "
            f"{len(types)} section types (expected n × 2 and n)"
        )
    if points.ndim != 2 or points.shape[1] != 4:
        raise MorphologyError(
            f"could not read morphology {path}: HDF5 v2 points of shape {points.shape} "
            "(expected n × 4: x, y, z, diameter)"
        )
    table = np.column_stack([offsets[:, 0], types, offsets[:, 1]]).astype(np.int32)
    v1 = work / "v1.h5"
    with h5py.File(v1, "w") as f:
        f.create_dataset("points", data=points.astype(np.float32))
        f.create_dataset("structure", data=table)
        f.create_group("metadata").attrs["version"] = np.array([1, 1], dtype=np.uint32)
        f["metadata"].attrs["cell_family"] = np.array([0], dtype=np.uint32)
    return v1


# -- MorphIO -------------------------------------------------------------------------------------


def _clean(message: str, source: Path | None = None) -> str:
    """MorphIO's message on one line, without colours; ``source``'s "FILE:12:error" → "line 12:"."""
    text = _ANSI.sub("", message)
    if source is not None:
        text = re.sub(re.escape(str(source)) + r":(\d+):(?:error|warning)", r"line \1:", text)
    out = ""
    for line in (line.strip() for line in text.splitlines()):
        if line:
            out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out


def _morphio_read(source: Path, path: Path) -> Any:
    """MorphIO's reading of ``source`` (``path`` or its v1 rewrite); its errors name ``path``."""
    import morphio
    from morphio import _morphio

    collector = morphio.WarningHandlerCollector()
    try:
        morph = morphio.Morphology(
            str(source),
            options=morphio.Option.allow_unifurcated_section_change,
            warning_handler=collector,
        )
    except morphio.MorphioError as exc:
        raise MorphologyError(
            f"could not parse morphology {path}: {_clean(str(exc), source)}"
        ) from None
    for emission in collector.get_all():
        warning = emission.warning
        if isinstance(warning, _morphio.DisconnectedNeurite | _morphio.WrongRootPoint):
            raise MorphologyError(f"{path}: {_clean(warning.msg(), source)}")
    return morph


@dataclass(frozen=True)
class DendriteTree:
    """A dendrite tree of a file: its number among the file's dendrite trees (file order), its
    tag in the file, where it starts and how much dendrite it holds."""

    index: int
    tag: str  # "basal" | "apical"
    root: tuple[float, float, float]  # µm
    length: float  # µm

    def describe(self) -> str:
        x, y, z = self.root
        return (
            f"tree {self.index}: {self.tag}, starts at ({x:.1f}, {y:.1f}, {z:.1f}) µm, "
            f"{self.length:.1f} µm of dendrite"
        )


def _section_length(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum()) if len(points) > 1 else 0.0


def dendrite_trees(morph: Any) -> list[DendriteTree]:
    """The file's dendrite trees (MorphIO basal and apical), numbered in file order."""
    import morphio

    tags = {
        morphio.SectionType.basal_dendrite: "basal",
        morphio.SectionType.apical_dendrite: "apical",
    }
    trees: list[DendriteTree] = []
    for root in morph.root_sections:
        if root.type not in tags:
            continue
        length = sum(_section_length(sec.points) for sec in root.iter())
        x, y, z = root.points[0]
        trees.append(
            DendriteTree(len(trees), tags[root.type], (float(x), float(y), float(z)), length)
        )
    return trees


def _check_geometry(morph: Any, path: Path) -> None:
    """Soma present; finite coordinates and diameters of a plausible size; no dangling dendrite."""
    import morphio

    if morph.soma_type == morphio.SomaType.SOMA_UNDEFINED or len(morph.soma.points) == 0:
        raise MorphologyError(
            f"{path}: the morphology has no soma; an L5PC model needs a soma, basal and apical "
            "dendrites (ASC: CellBody, Dendrite, Apical; SWC types 1, 3, 4)"
        )
    if morph.soma_type == morphio.SomaType.SOMA_SIMPLE_CONTOUR:
        _check_contour(np.asarray(morph.soma.points, float), path)
    parts = [("the soma", morph.soma.points, morph.soma.diameters)]
    parts += [(_what(sec.type), sec.points, sec.diameters) for sec in morph.iter()]
    for what, points, diameters in parts:
        points, diameters = np.asarray(points, float), np.asarray(diameters, float)
        bad = ~np.isfinite(points).all(axis=1) | ~np.isfinite(diameters)
        if bad.any():
            i = int(np.argmax(bad))
            raise MorphologyError(
                f"{path}: {what} has a point with a non-finite coordinate or diameter "
                f"({_point(points[i], diameters[i])})"
            )
        far = np.abs(points).max(axis=1) > MAX_COORDINATE_UM
        if far.any():
            i = int(np.argmax(far))
            raise MorphologyError(
                f"{path}: {what} has a point {float(np.abs(points[i]).max()):.3g} µm from the "
                f"origin ({_point(points[i], diameters[i])}); elmpipe reads coordinates in µm, "
                f"within ±{MAX_COORDINATE_UM:g} µm"
            )
        wrong = (diameters < 0) | (diameters > MAX_DIAMETER_UM)
        if wrong.any():
            i = int(np.argmax(wrong))
            raise MorphologyError(
                f"{path}: {what} has a diameter of {diameters[i]:.3g} µm "
                f"({_point(points[i], diameters[i])}); diameters must lie in 0 … "
                f"{MAX_DIAMETER_UM:g} µm"
            )
    soma = np.asarray(morph.soma.points, float)
    centre = soma.mean(axis=0)
    radius = max(
        float(np.linalg.norm(soma - centre, axis=1).max()),
        float(np.asarray(morph.soma.diameters, float).max()) / 2,
    )
    for tree in dendrite_trees(morph):
        gap = float(np.linalg.norm(np.asarray(tree.root) - centre)) - radius
        if gap > DANGLING_GAP_UM:
            raise MorphologyError(
                f"{path}: dendrite {tree.describe()} — its first point is {gap:.1f} µm beyond "
                f"the soma's outline (radius {radius:.1f} µm around {_xyz(centre)}): a dangling "
                f"dendrite, not attached to the soma as traced (allowed: {DANGLING_GAP_UM:g} µm)"
            )


def _check_contour(points: np.ndarray, path: Path) -> None:
    """A contour soma must outline an area: Import3d crashes on a contour whose points lie on a
    line (or coincide)."""
    centred = points - points.mean(axis=0)
    spread = np.linalg.svd(centred, compute_uv=False) if len(points) >= 3 else np.zeros(2)
    if len(points) < 3 or not np.all(np.isfinite(spread)) or spread[1] <= 1e-6 * max(spread[0], 1):
        raise MorphologyError(
            f"{path}: the soma contour's {len(points)} points lie on a line or coincide: a "
            "contour soma (ASC CellBody, HDF5 soma) must outline the soma with at least three "
            "points around it"
        )


def _what(kind: Any) -> str:
    names = {"basal_dendrite": "a basal dendrite", "apical_dendrite": "an apical dendrite"}
    return names.get(kind.name, f"a section of type {kind.name}")


def _xyz(p: Any) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in p) + ")"


def _point(p: Any, d: float) -> str:
    return f"point {_xyz(p)}, diameter {float(d):.4g}"


def _apical_choice(
    trees: list[DendriteTree], apical_trees: Sequence[int] | None, path: Path
) -> list[bool]:
    """Which dendrite trees are apical: the tags, or ``apical_trees`` when given."""
    listing = "\n".join("  " + tree.describe() for tree in trees) or "  (none)"
    if apical_trees is not None:
        chosen = [int(k) for k in apical_trees]
        wrong = [k for k in chosen if not 0 <= k < len(trees)]
        if wrong or len(set(chosen)) != len(chosen) or not chosen:
            raise MorphologyError(
                f"{path}: apical_trees {list(chosen)} must name distinct dendrite trees of the "
                f"file, numbered 0 … {len(trees) - 1} in file order:\n{listing}"
            )
        apical = [tree.index in chosen for tree in trees]
    else:
        apical = [tree.tag == "apical" for tree in trees]
    how = "--apical-trees K (config: cell.apical_trees: [K]) names the apical tree(s)"
    if not trees:
        raise MorphologyError(
            f"{path}: the morphology has no dendrites; an L5PC model needs a soma, basal and "
            "apical dendrites (ASC: CellBody, Dendrite, Apical; SWC types 1, 3, 4)"
        )
    if not any(apical):
        raise MorphologyError(
            f"{path}: the morphology has no apical dendrites (no tree is tagged apical: ASC "
            f"(Apical), SWC type 4); {how}. Its dendrite trees:\n{listing}"
        )
    if all(apical):
        raise MorphologyError(
            f"{path}: the morphology has no basal dendrites; an L5PC model needs a soma, basal "
            f"and apical dendrites. Its dendrite trees:\n{listing}"
        )
    return apical


# -- Import3d ------------------------------------------------------------------------------------


def _import3d_source(
    path: Path,
    morph: Any,
    samples: list[SwcSample] | None,
    trees: list[DendriteTree],
    apical: list[bool],
    work: Path,
) -> Path:
    """The file Import3d builds the sections from, under an ASCII name in ``work``: the file
    itself, with its dendrite trees retagged where ``apical`` disagrees with its tags."""
    suffix = path.suffix.lower()
    retag = [t for t, a in zip(trees, apical, strict=True) if (t.tag == "apical") != a]
    if suffix == ".swc":
        assert samples is not None
        return _swc_source(path, samples, trees, apical, retag, work)
    if suffix == ".asc":
        source = work / "morphology.asc"
        if retag:
            _retag_asc(path, trees, apical, source)
        else:
            shutil.copyfile(path, source)
        return source
    return _h5_source(path, morph, apical, retag, work)


def _swc_source(
    path: Path,
    samples: list[SwcSample],
    trees: list[DendriteTree],
    apical: list[bool],
    retag: list[DendriteTree],
    work: Path,
) -> Path:
    retype: dict[int, int] = {}
    if retag:
        swc_trees = [t for t in _swc_trees(samples) if t[0].kind in (3, 4)]
        _same_trees(path, trees, [tuple(map(float, t[0].fields[2:5])) for t in swc_trees])
        for tree in retag:
            for s in swc_trees[tree.index]:
                if s.kind in (3, 4):
                    retype[s.ident] = 4 if apical[tree.index] else 3
    source = work / "morphology.swc"
    source.write_text(_swc_for_import3d(samples, retype))
    return source


def _retag_asc(path: Path, trees: list[DendriteTree], apical: list[bool], source: Path) -> None:
    """Write ``path`` to ``source`` with each top-level (Dendrite)/(Apical) tag as ``apical``
    says."""
    text = path.read_bytes().decode("latin-1")  # byte for byte, whatever the encoding
    tags = _asc_tree_tags(text)
    if len(tags) != len(trees) or any(
        tag.lower() != {"basal": "dendrite", "apical": "apical"}[tree.tag]
        for (_, _, tag), tree in zip(tags, trees, strict=False)
    ):
        raise MorphologyError(
            f"{path}: cannot rename the trees of this Neurolucida file: MorphIO reads "
            f"{len(trees)} dendrite trees, the file has {len(tags)} top-level (Dendrite) "
            "or (Apical) tags"
        )
    for index, (start, end, _) in reversed(list(enumerate(tags))):
        word = "Apical" if apical[index] else "Dendrite"
        text = text[:start] + word + text[end:]
    source.write_bytes(text.encode("latin-1"))


def _h5_source(
    path: Path, morph: Any, apical: list[bool], retag: list[DendriteTree], work: Path
) -> Path:
    """HDF5, which Import3d cannot read: MorphIO writes it as ASC for a contour soma, SWC for
    any other, retagged."""
    import morphio
    from morphio.mut import Morphology as Mutable

    mutable = Mutable(morph)
    kinds = {True: morphio.SectionType.apical_dendrite, False: morphio.SectionType.basal_dendrite}
    roots = [r for r in mutable.root_sections if r.type in kinds.values()]
    for tree in retag:
        for sec in roots[tree.index].iter():
            if sec.type in kinds.values():
                sec.type = kinds[apical[tree.index]]
    contour = morph.soma_type == morphio.SomaType.SOMA_SIMPLE_CONTOUR
    source = work / ("morphology.asc" if contour else "morphology.swc")
    try:
        mutable.write(str(source))
    except morphio.MorphioError as exc:
        raise MorphologyError(
            f"could not convert morphology {path} for NEURON: {_clean(str(exc))}"
        ) from None
    return source


def _same_trees(path: Path, trees: list[DendriteTree], roots: list[tuple]) -> None:
    if len(roots) != len(trees) or any(
        not np.allclose(tree.root, root, rtol=1e-5, atol=1e-3)
        for tree, root in zip(trees, roots, strict=False)
    ):
        raise MorphologyError(
            f"{path}: cannot rename the trees of this file: its samples and MorphIO's reading "
            "disagree on the dendrite trees"
        )


_built_ok: set[str] = set()


def _check_in_child(source: Path, path: Path) -> None:
    """Build ``source`` with Import3d in a throw-away process first.

    On a syntax error Import3d's Neurolucida reader executes hoc's ``stop``, which leaves the hoc
    interpreter of the calling process unusable (every later hoc call silently does nothing), and
    some inputs make Import3d crash its process. A child process takes that hit, and any hang,
    instead of the caller. Files that build are remembered by content hash, so this costs one
    short process per new file and process.
    """
    key = source.suffix.lower() + hashlib.sha256(source.read_bytes()).hexdigest()
    if key in _built_ok:
        return
    try:
        child = run_in_child("simulations.morphology", "_report_build", str(source), 300)
    except subprocess.TimeoutExpired:
        raise MorphologyError(
            f"could not parse morphology {path}: Import3d did not finish"
        ) from None
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        how = (
            f"NEURON's Import3d crashed on it (signal {-child.returncode})"
            if child.returncode < 0
            else f"Import3d failed (exit {child.returncode})"
        )
        detail = (child.stderr.strip()[-500:] or child.stdout.strip()[-500:]).replace(
            str(source), str(path)
        )
        raise MorphologyError(f"could not parse morphology {path}: {how}\n{detail}".rstrip())
    problems = json.loads(lines[-1])["problems"]
    if problems:
        detail = "\n".join(problems[:5]).replace(str(source), str(path))
        raise MorphologyError(f"could not parse morphology {path}:\n{detail}")
    _built_ok.add(key)


class _Host:
    """Section lists for a throw-away Import3d build."""

    def __init__(self) -> None:
        self.soma: list = []
        self.dend: list = []
        self.apic: list = []
        self.axon: list = []
        self.all: list = []

    def __repr__(self) -> str:
        return "probe"


def _report_build(path: str) -> None:
    """Child-process side of :func:`_check_in_child`: parse and build, print problems as JSON."""
    h = hoc()
    reader = getattr(h, READERS[Path(path).suffix.lower()])()
    reader.quiet = 1
    with captured_c_output() as output:
        try:
            reader.input(path)
            failed = ""
        except RuntimeError as exc:
            failed = str(exc)
    problems = _complaints(output[0]) or ([failed] if failed else [])
    if not problems:
        with captured_c_output() as output:
            try:
                h.Import3d_GUI(reader, False).instantiate(_Host())
            except RuntimeError as exc:
                problems = [f"could not build sections: {exc}"]
    print(json.dumps({"problems": problems}))


def _complaints(text: str) -> list[str]:
    keys = ("error", "could not parse", "parse error", "unexpected")
    return [line.strip() for line in text.splitlines() if any(k in line.lower() for k in keys)]


# -- the entry point -----------------------------------------------------------------------------


def read_morphology(path: str | Path, work: Path) -> tuple[Any, list[SwcSample] | None]:
    """Parse and check ``path`` (MorphIO, plus elmpipe's own SWC line checks): the MorphIO
    morphology and, for SWC, the samples. ``work``: a folder for an HDF5 v2 rewrite."""
    path = Path(path).expanduser()
    _check_file(path)
    suffix = path.suffix.lower()
    samples = None
    source = path
    if suffix == ".swc":
        samples = read_swc(path)
    elif suffix == ".asc":
        _check_asc(path)
    else:
        source = _h5_as_v1(path, work)
    morph = _morphio_read(source, path)
    _check_geometry(morph, path)
    return morph, samples


def morphology_trees(path: str | Path) -> list[DendriteTree]:
    """The dendrite trees of a morphology file, numbered as ``apical_trees`` counts them."""
    with tempfile.TemporaryDirectory(prefix="elmpipe-morphology-") as work:
        morph, _ = read_morphology(path, Path(work))
        return dendrite_trees(morph)


def import_morphology(
    path: str | Path, host: Any, apical_trees: Sequence[int] | None = None
) -> None:
    """Check ``path`` and instantiate its sections into ``host``.

    ``host`` must have empty lists ``soma``, ``dend``, ``apic``, ``axon`` and ``all``; Import3d
    fills them and names the sections after ``repr(host)``. ``apical_trees``: the dendrite trees
    (numbered in file order) to make apical, every other one basal; None: as the file tags them.
    """
    path = Path(path).expanduser()
    with tempfile.TemporaryDirectory(prefix="elmpipe-morphology-") as folder:
        work = Path(folder)
        morph, samples = read_morphology(path, work)
        trees = dendrite_trees(morph)
        apical = _apical_choice(trees, apical_trees, path)
        source = _import3d_source(path, morph, samples, trees, apical, work)
        if path.resolve() != DEFAULT_MORPHOLOGY.resolve():
            _check_in_child(source, path)
        _instantiate(source, host, path)


def _instantiate(source: Path, host: Any, path: Path) -> None:
    h = hoc()
    reader = getattr(h, READERS[source.suffix.lower()])()
    reader.quiet = 1
    with captured_c_output() as output:
        try:
            reader.input(str(source))
            failed = None
        except RuntimeError as exc:
            failed = exc
    printed = output[0] if output else ""
    problems = _complaints(printed)
    if failed is not None or problems:
        detail = "\n".join(problems[:5]) or printed.strip()[-500:] or str(failed)
        raise MorphologyError(
            f"could not parse morphology {path}:\n{detail.replace(str(source), str(path))}"
        )
    with captured_c_output() as output:
        try:
            h.Import3d_GUI(reader, False).instantiate(host)
            failed = None
        except RuntimeError as exc:
            failed = exc
    if failed is not None:
        detail = (output[0] if output else "").strip()[-500:] or str(failed)
        raise MorphologyError(f"could not build sections from {path}:\n{detail}")


def check_sections(host: Any, path: str | Path) -> None:
    """Fail with a message naming the problem if ``host`` is not a usable pyramidal cell."""
    for attr, what in (("soma", "soma"), ("dend", "basal dendrites"), ("apic", "apical dendrites")):
        if len(getattr(host, attr)) == 0:
            raise MorphologyError(
                f"{path}: the morphology has no {what}; an L5PC model needs a soma, basal and "
                "apical dendrites (ASC: CellBody, Dendrite, Apical; SWC types 1, 3, 4)"
            )
    for sec in [*host.soma, *host.dend, *host.apic]:
        if sec.L < 1e-6:  # NEURON stores a zero-length section as 1e-9 µm
            raise MorphologyError(f"{path}: section {sec.name()} has zero length")
        if any(seg.diam <= 0 for seg in sec):
            raise MorphologyError(f"{path}: section {sec.name()} has zero diameter")
