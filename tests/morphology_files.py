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
