"""Read reconstructed morphologies (Neurolucida ASC, SWC) through NEURON's Import3d, and check them.

Import3d does the parsing; this module turns its printed complaints into errors, and checks what
the pipeline relies on: a soma, basal and apical dendrites, and no section of zero length or
diameter (which would give a compartment without membrane or with infinite axial resistance).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from elmpipe.errors import InputError
from simulations._neuron import captured_c_output, hoc

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_MORPHOLOGY = DATA_DIR / "default_l5pc.swc"

#: file suffix → Import3d reader class
READERS = {".asc": "Import3d_Neurolucida3", ".swc": "Import3d_SWC_read"}

#: SWC structure identifiers Import3d maps onto the section lists we use
SWC_TYPES = {1: "soma", 2: "axon", 3: "basal dendrite", 4: "apical dendrite"}


class MorphologyError(InputError):
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


def _check_swc(path: Path) -> None:
    """Validate SWC structure before Import3d sees it.

    Import3d skips unparsable lines and crashes the process on a parent id that does not exist,
    so every sample line is checked here: seven numeric fields, finite coordinates, radii that
    are not negative, unique ids, parents defined earlier, and structure types elmpipe knows.
    """
    seen: set[int] = set()
    unknown: dict[int, int] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path}, line {number}"
        if len(fields) != 7:
            raise MorphologyError(
                f"could not parse morphology {where}: expected 7 fields "
                f"(id type x y z radius parent), found {len(fields)}: {line.strip()!r}"
            )
        try:
            ident, kind, parent = int(fields[0]), int(float(fields[1])), int(fields[6])
            x, y, z, radius = (float(v) for v in fields[2:6])
        except ValueError:
            raise MorphologyError(
                f"could not parse morphology {where}: non-numeric field in {line.strip()!r}"
            ) from None
        if not all(map(math.isfinite, (x, y, z, radius))):
            raise MorphologyError(f"could not parse morphology {where}: non-finite coordinate")
        if radius < 0:
            raise MorphologyError(
                f"could not parse morphology {where}: sample {ident} has a negative radius "
                f"({fields[5]} µm)"
            )
        if ident in seen:
            raise MorphologyError(
                f"could not parse morphology {where}: duplicate sample id {ident}"
            )
        if seen and ident < max(seen):
            raise MorphologyError(
                f"could not parse morphology {where}: sample ids must increase down the file "
                f"(sort the SWC so that {ident} comes before {max(seen)})"
            )
        if parent != -1 and parent not in seen:
            raise MorphologyError(
                f"could not parse morphology {where}: parent {parent} of sample {ident} is not "
                "defined on an earlier line"
            )
        seen.add(ident)
        if kind not in SWC_TYPES:
            unknown.setdefault(kind, number)
    if not seen:
        raise MorphologyError(f"could not parse morphology {path}: no samples found")
    if unknown:
        where = ", ".join(f"type {k} (first on line {n})" for k, n in sorted(unknown.items()))
        raise MorphologyError(
            f"{path}: unsupported SWC structure types {where}; elmpipe uses "
            + ", ".join(f"{k} = {v}" for k, v in SWC_TYPES.items())
        )


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


_parsed_ok: set[tuple[str, str]] = set()


def _check_asc_in_child(path: Path) -> None:
    """Parse a Neurolucida file with Import3d in a throw-away process first.

    On a syntax error Import3d's Neurolucida reader executes hoc's ``stop``, which leaves the hoc
    interpreter of the calling process unusable (every later hoc call silently does nothing). A
    child process takes that hit, and any crash or hang, instead of the caller. Files that parse
    are remembered by content hash, so this costs one short process per file and process.
    """
    key = (str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest())
    if key in _parsed_ok:
        return
    package_root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    code = (
        "import sys; from simulations.morphology import _report_parse; _report_parse(sys.argv[1])"
    )
    try:
        child = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MorphologyError(
            f"could not parse morphology {path}: Import3d did not finish"
        ) from None
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        raise MorphologyError(
            f"could not parse morphology {path}: Import3d failed (exit {child.returncode})\n"
            + (child.stderr.strip()[-500:] or child.stdout.strip()[-500:])
        )
    problems = json.loads(lines[-1])["problems"]
    if problems:
        raise MorphologyError(f"could not parse morphology {path}:\n" + "\n".join(problems[:5]))
    _parsed_ok.add(key)


def _report_parse(path: str) -> None:
    """Child-process side of :func:`_check_asc_in_child`: parse, print problems as JSON."""
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
    print(json.dumps({"problems": problems}))


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
        _check_swc(path)
    else:
        _check_asc(path)
        _check_asc_in_child(path)
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
        if sec.L < 1e-6:  # NEURON stores a zero-length section as 1e-9 µm
            raise MorphologyError(f"{path}: section {sec.name()} has zero length")
        if any(seg.diam <= 0 for seg in sec):
            raise MorphologyError(f"{path}: section {sec.name()} has zero diameter")
