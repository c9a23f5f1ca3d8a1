"""Small morphology files written by the tests (ASC and SWC), plus broken variants."""

from __future__ import annotations

from pathlib import Path

SWC_SOMA = ["1 1 0 0 0 8 -1", "2 1 0 -8 0 8 1", "3 1 0 8 0 8 1"]
SWC_DENDRITES = [
    "4 3 8 0 0 1 1",
    "5 3 50 0 0 0.8 4",
    "6 3 -8 0 0 1 1",
    "7 3 -60 -10 0 0.8 6",
    "8 4 0 8 0 2 1",
    "9 4 0 200 0 1.5 8",
    "10 4 30 300 0 1 9",
    "11 4 -30 300 0 1 9",
    "12 2 0 -12 0 1 1",
    "13 2 0 -100 0 1 12",
]

ASC = """; tiny test cell
("CellBody"
  (Color Red)
  (CellBody)
  ( 8.0 0.0 0.0 0.5)
  ( 0.0 8.0 0.0 0.5)
  (-8.0 0.0 0.0 0.5)
  ( 0.0 -8.0 0.0 0.5)
)
( (Color Blue)
  (Dendrite)
  ( 8.0 0.0 0.0 1.0)
  ( 50.0 0.0 0.0 0.8)
  (
    ( 80.0 20.0 0.0 0.6)
    |
    ( 80.0 -20.0 0.0 0.6)
  )
)
( (Color Green)
  (Apical)
  ( 0.0 8.0 0.0 2.0)
  ( 0.0 100.0 0.0 1.8)
  ( 0.0 200.0 0.0 1.5)
  (
    ( 30.0 300.0 0.0 1.0)
    |
    (-30.0 300.0 0.0 1.0)
  )
)
( (Color Yellow)
  (Axon)
  ( 0.0 -8.0 0.0 1.0)
  ( 0.0 -100.0 0.0 1.0)
)
"""


def write_swc(path: Path, lines: list[str]) -> Path:
    path.write_text("# test cell\n" + "\n".join(lines) + "\n")
    return path


def good_swc(directory: Path) -> Path:
    return write_swc(directory / "cell.swc", SWC_SOMA + SWC_DENDRITES)


def good_asc(directory: Path) -> Path:
    path = directory / "cell.asc"
    path.write_text(ASC)
    return path


# -- the same small cell in other formats and variants (tests/test_morphology_formats.py) -------


def asc_without_apical_tag(directory: Path) -> Path:
    """The ASC cell with its apical tree tagged (Dendrite): dendrite trees 0 and 1 are basal."""
    path = directory / "untagged.asc"
    path.write_text(ASC.replace("(Apical)", "(Dendrite)"))
    return path


def swc_with_blank_lines(directory: Path) -> Path:
    """The SWC cell with blank and whitespace-only lines and comments between the samples (valid
    SWC, common in public test data)."""
    lines = SWC_SOMA + SWC_DENDRITES
    text = "# a comment\n\n" + "\n".join(lines[:5]) + "\n\n   \t\n# another\n"
    text += "\n".join(f"{line}  # trailing comment" for line in lines[5:]) + "\n\n"
    path = directory / "blank.swc"
    path.write_text(text)
    return path


def swc_contour_soma(directory: Path) -> Path:
    """The SWC cell with its soma traced as a chain of eight samples around the outline."""
    ring = [(8.0, 0.0), (5.7, 5.7), (0.0, 8.0), (-5.7, 5.7), (-8.0, 0.0), (-5.7, -5.7)]
    ring += [(0.0, -8.0), (5.7, -5.7)]
    soma = [f"{i + 1} 1 {x} {y} 0 1 {i if i else -1}" for i, (x, y) in enumerate(ring)]
    offset = len(ring) - 3  # the dendrite samples' ids move up by this much

    def shifted(line: str) -> str:
        ident, kind, x, y, z, r, parent = line.split()
        parent = {"1": "1", "-1": "-1"}.get(parent, str(int(parent) + offset))
        if parent == "1":  # the dendrites start at the outline points they touch
            parent = {"3": "1", "4": "3", "2": "7"}[kind] if float(x) >= 0 else "5"
        return " ".join([str(int(ident) + offset), kind, x, y, z, r, parent])

    return write_swc(directory / "contour.swc", soma + [shifted(line) for line in SWC_DENDRITES])


def h5_v1(source: Path, path: Path) -> Path:
    """``source`` written as Blue Brain HDF5 v1 by MorphIO's writer."""
    from morphio.mut import Morphology

    Morphology(str(source)).write(str(path))
    return path


def h5_v2(source: Path, path: Path, stage: str = "raw") -> Path:
    """``source`` in the HDF5 v2 layout (/neuron1/<stage>/points, /neuron1/structure/<stage>,
    /neuron1/structure/sectiontype), written with h5py from MorphIO's v1 writing."""
    import h5py

    v1 = h5_v1(source, path.with_name(path.stem + "-v1.h5"))
    with h5py.File(v1, "r") as f:
        points, structure = f["points"][:], f["structure"][:]
    with h5py.File(path, "w") as f:
        f.create_dataset(f"neuron1/{stage}/points", data=points)
        f.create_dataset(f"neuron1/structure/{'raw' if stage == 'unraveled' else stage}",
                         data=structure[:, [0, 2]])  # fmt: skip
        f.create_dataset("neuron1/structure/sectiontype", data=structure[:, [1]])
    v1.unlink()
    return path
