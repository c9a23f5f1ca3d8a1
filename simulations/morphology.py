"""Read reconstructed morphologies (Neurolucida ASC, SWC) through NEURON's Import3d, and check them.

Import3d does the parsing; this module turns its printed complaints into errors, and checks what
the pipeline relies on: a soma, basal and apical dendrites, and no section of zero length or
diameter (which would give a compartment without membrane or with infinite axial resistance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulations._neuron import captured_c_output, hoc

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_MORPHOLOGY = DATA_DIR / "default_l5pc.swc"

#: file suffix → Import3d reader class
READERS = {".asc": "Import3d_Neurolucida3", ".swc": "Import3d_SWC_read"}

#: SWC structure identifiers Import3d maps onto the section lists we use
SWC_TYPES = {1: "soma", 2: "axon", 3: "basal dendrite", 4: "apical dendrite"}


class MorphologyError(ValueError):
    """A morphology file is missing, unreadable, or unusable for an L5PC model."""


def default_morphology_path() -> Path:
    """The built-in procedurally generated L5PC-like cell (see docs/cell.md)."""
    return DEFAULT_MORPHOLOGY


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MorphologyError(f"morphology file not found: {path}")
    if not path.is_file():
        raise MorphologyError(f"morphology path is not a file: {path}")
    if path.suffix.lower() not in READERS:
        raise MorphologyError(
            f"unknown morphology format {path.suffix!r} for {path}: "
            f"elmpipe reads {', '.join(sorted(READERS))} (Neurolucida ASCII, SWC)"
        )
    if path.stat().st_size == 0:
        raise MorphologyError(f"morphology file is empty: {path}")


def _check_swc_types(path: Path) -> None:
    """Import3d would invent section lists for custom SWC types; reject them up front."""
    unknown: dict[int, int] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if len(fields) < 7:
            continue  # malformed lines are reported by Import3d's parser below
        try:
            kind = int(float(fields[1]))
        except ValueError:
            continue
        if kind not in SWC_TYPES:
            unknown.setdefault(kind, number)
    if unknown:
        where = ", ".join(f"type {k} (first on line {n})" for k, n in sorted(unknown.items()))
        raise MorphologyError(
            f"{path}: unsupported SWC structure types {where}; elmpipe uses "
            + ", ".join(f"{k} = {v}" for k, v in SWC_TYPES.items())
        )


def _complaints(text: str) -> list[str]:
    keys = ("error", "could not parse", "parse error", "unexpected")
    return [line.strip() for line in text.splitlines() if any(k in line.lower() for k in keys)]


def import_morphology(path: str | Path, host: Any) -> None:
    """Instantiate the sections of ``path`` into ``host``.

    ``host`` must have empty lists ``soma``, ``dend``, ``apic``, ``axon`` and ``all``; Import3d
    fills them and names the sections after ``repr(host)``.
    """
    path = Path(path).expanduser()
    _check_file(path)
    if path.suffix.lower() == ".swc":
        _check_swc_types(path)
    h = hoc()
    reader = getattr(h, READERS[path.suffix.lower()])()
    reader.quiet = 1
    with captured_c_output() as output:
        try:
            reader.input(str(path))
            failed = None
        except RuntimeError as exc:
            failed = exc
    printed = output[0] if output else ""
    problems = _complaints(printed)
    if failed is not None or problems:
        detail = "\n".join(problems[:5]) or printed.strip()[-500:] or str(failed)
        raise MorphologyError(f"could not parse morphology {path}:\n{detail}")
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
        if sec.L <= 0:
            raise MorphologyError(f"{path}: section {sec.name()} has zero length")
        if any(seg.diam <= 0 for seg in sec):
            raise MorphologyError(f"{path}: section {sec.name()} has zero diameter")
