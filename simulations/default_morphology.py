"""The built-in default cell: a procedurally generated layer-5 pyramidal-like morphology.

elmpipe must run without any reconstruction, so it ships its own cell: a soma, basal trees, an
apical trunk with obliques that splits into a tuft. Lengths and diameters lie in the range
published for rodent thick-tufted L5 pyramidal cells, with fewer dendritic segments than the Hay
reconstruction so that demos and tests are quick. The geometry is deterministic: every random
choice comes from a fixed seed through numpy's legacy ``RandomState``, whose streams never change.

``python -m simulations.default_morphology`` regenerates the shipped SWC file; a test checks the
shipped file matches this code. docs/cell.md describes the geometry and the cell's measured
behaviour.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar, cast

import numpy as np

from simulations.morphology import DEFAULT_MORPHOLOGY

SOMA, AXON, BASAL, APICAL = 1, 2, 3, 4


@dataclass(frozen=True)
class Design:
    """The generator's knobs (lengths in µm, angles in degrees)."""

    seed: int = 20261127
    soma_radius: float = 9.5
    axon_length: float = 120.0
    # basal trees: root stem, first-order branches, terminals
    basal_trees: int = 5
    basal_lengths: tuple[float, float, float] = (30.0, 55.0, 115.0)
    basal_diams: tuple[float, float, float, float] = (1.6, 1.1, 0.8, 0.45)
    # apical trunk up to the main bifurcation, with obliques leaving it
    trunk_length: float = 600.0
    trunk_diams: tuple[float, float] = (3.6, 2.0)
    oblique_at: tuple[float, ...] = (45.0, 110.0, 180.0, 255.0, 330.0, 410.0)
    oblique_lengths: tuple[float, float] = (50.0, 110.0)
    oblique_diams: tuple[float, float, float] = (1.0, 0.7, 0.4)
    # tuft: three generations of binary branching above the main bifurcation
    tuft_lengths: tuple[float, float, float] = (150.0, 120.0, 210.0)
    tuft_diams: tuple[float, float, float, float] = (1.5, 1.0, 0.7, 0.35)
    step: float = 10.0  # distance between successive SWC samples
    wiggle: float = 0.10  # s.d. (radians) of the random turn between samples
    length_jitter: float = 0.10  # relative s.d. of branch lengths


_Sizes = TypeVar("_Sizes", bound=tuple[float, ...])


def variant(seed: int, scale: float = 1.0, basal_trees: int | None = None) -> Design:
    """Another cell of the same kind: the built-in design with its own random stream (branch
    angles, wiggles, length jitter), every length × ``scale`` (diameters × √scale, so that a
    bigger cell is also thicker, as larger L5 cells are) and optionally another number of basal
    trees. Pretraining a cell-general surrogate wants many cells; these are cheap ones."""
    if not 0.5 <= scale <= 2.0:
        raise ValueError(f"scale {scale} is outside 0.5 … 2 (an L5 pyramidal cell's range)")
    base = Design()
    thick = float(np.sqrt(scale))

    def longer(values: _Sizes) -> _Sizes:
        return cast(_Sizes, tuple(v * scale for v in values))

    def thicker(values: _Sizes) -> _Sizes:
        return cast(_Sizes, tuple(v * thick for v in values))

    return replace(
        base,
        seed=seed,
        basal_trees=basal_trees or base.basal_trees,
        basal_lengths=longer(base.basal_lengths),
        basal_diams=thicker(base.basal_diams),
        trunk_length=base.trunk_length * scale,
        trunk_diams=thicker(base.trunk_diams),
        oblique_at=longer(base.oblique_at),
        oblique_lengths=longer(base.oblique_lengths),
        oblique_diams=thicker(base.oblique_diams),
        tuft_lengths=longer(base.tuft_lengths),
        tuft_diams=thicker(base.tuft_diams),
    )


class _Writer:
    def __init__(self, design: Design) -> None:
        self.design = design
        self.rng = np.random.RandomState(design.seed)
        self.rows: list[tuple[int, int, np.ndarray, float, int]] = []

    def add(self, kind: int, xyz: np.ndarray, radius: float, parent: int) -> int:
        self.rows.append((len(self.rows) + 1, kind, np.asarray(xyz, float), radius, parent))
        return len(self.rows)

    def jitter(self, length: float) -> float:
        factor = 1.0 + self.design.length_jitter * self.rng.standard_normal()
        return float(length * np.clip(factor, 0.75, 1.25))

    def turn(self, direction: np.ndarray, towards: np.ndarray, pull: float = 0.15) -> np.ndarray:
        """Random small turn, pulled back towards the branch's intended heading."""
        noise = self.design.wiggle * self.rng.standard_normal(3)
        new = direction + noise + pull * (towards - direction)
        return new / np.linalg.norm(new)

    def branch(
        self,
        kind: int,
        parent: int,
        start: np.ndarray,
        heading: np.ndarray,
        length: float,
        diams: tuple[float, float],
        marks: tuple[float, ...] = (),
    ) -> tuple[int, np.ndarray, np.ndarray, dict[float, tuple[int, np.ndarray]]]:
        """Grow one unbranched piece; return (last id, end point, end heading, samples at marks)."""
        heading = heading / np.linalg.norm(heading)
        direction = heading.copy()
        n = max(2, round(length / self.design.step))
        pos = np.asarray(start, float)
        last = parent
        at_marks: dict[float, tuple[int, np.ndarray]] = {}
        for i in range(1, n + 1):
            direction = self.turn(direction, heading)
            pos = pos + direction * (length / n)
            frac = i / n
            diam = diams[0] + (diams[1] - diams[0]) * frac
            last = self.add(kind, pos, diam / 2, last)
            for mark in marks:
                if mark not in at_marks and frac * length >= mark:
                    at_marks[mark] = (last, pos.copy())
        return last, pos, direction, at_marks

    def tree(
        self,
        kind: int,
        parent: int,
        start: np.ndarray,
        heading: np.ndarray,
        lengths: tuple[float, ...],
        diams: tuple[float, ...],
        spread: float,
    ) -> None:
        """A binary tree: len(lengths) generations, each splitting at ±spread degrees."""
        last, end, direction = self.branch(
            kind, parent, start, heading, self.jitter(lengths[0]), (diams[0], diams[1])
        )[:3]
        if len(lengths) == 1:
            return
        for sign in (-1.0, 1.0):
            child = _rotate(direction, sign * spread + 8.0 * self.rng.standard_normal(), self.rng)
            self.tree(kind, last, end, child, lengths[1:], diams[1:], spread * 0.8)

    def swc(self) -> str:
        lines = [
            "# elmpipe built-in default cell: procedurally generated L5 pyramidal-like morphology",
            f"# generated by simulations/default_morphology.py (seed {self.design.seed}); "
            "do not edit by hand",
            "# id type x y z radius parent",
        ]
        for ident, kind, xyz, radius, parent in self.rows:
            x, y, z = (f"{c:.3f}" for c in xyz)
            lines.append(f"{ident} {kind} {x} {y} {z} {radius:.4f} {parent}")
        return "\n".join(lines) + "\n"


def _rotate(direction: np.ndarray, degrees: float, rng: np.random.RandomState) -> np.ndarray:
    """Rotate ``direction`` by ``degrees`` about a random axis perpendicular to it."""
    axis = np.cross(direction, rng.standard_normal(3))
    axis /= np.linalg.norm(axis)
    angle = np.radians(degrees)
    rotated = (
        direction * np.cos(angle)
        + np.cross(axis, direction) * np.sin(angle)
        + axis * np.dot(axis, direction) * (1 - np.cos(angle))
    )
    return rotated / np.linalg.norm(rotated)


def generate_swc(design: Design = Design()) -> str:
    """Return the default cell as SWC text (y points towards the pia)."""
    d = design
    w = _Writer(d)
    r = d.soma_radius
    centre = w.add(SOMA, np.zeros(3), r, -1)
    w.add(SOMA, np.array([0.0, -r, 0.0]), r, centre)
    w.add(SOMA, np.array([0.0, r, 0.0]), r, centre)

    down = np.array([0.0, -1.0, 0.0])
    w.branch(AXON, centre, np.array([0.0, -r, 0.0]), down, d.axon_length, (1.2, 0.8))

    # basal trees fan out around and below the soma
    for k in range(d.basal_trees):
        azimuth = 2 * np.pi * (k + 0.3 * w.rng.uniform()) / d.basal_trees
        elevation = np.radians(w.rng.uniform(-55.0, 5.0))
        heading = np.array(
            [
                np.cos(elevation) * np.cos(azimuth),
                np.sin(elevation),
                np.cos(elevation) * np.sin(azimuth),
            ]
        )
        w.tree(BASAL, centre, heading * r, heading, d.basal_lengths, d.basal_diams, spread=35.0)

    # apical trunk, obliques leaving it at the marks, tuft above the main bifurcation
    up = np.array([0.0, 1.0, 0.0])
    trunk_end, end, direction, marks = w.branch(
        APICAL, centre, up * r, up, d.trunk_length, d.trunk_diams, marks=d.oblique_at
    )
    for k, mark in enumerate(d.oblique_at):
        sample, pos = marks[mark]
        azimuth = np.pi * k * 0.9
        tilt = np.radians(w.rng.uniform(50.0, 70.0))
        heading = np.array(
            [np.sin(tilt) * np.cos(azimuth), np.cos(tilt), np.sin(tilt) * np.sin(azimuth)]
        )
        w.tree(APICAL, sample, pos, heading, d.oblique_lengths, d.oblique_diams, spread=30.0)
    for sign in (-1.0, 1.0):
        heading = _rotate(direction, sign * 30.0, w.rng)
        w.tree(APICAL, trunk_end, end, heading, d.tuft_lengths, d.tuft_diams, spread=25.0)
    return w.swc()


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the built-in default cell as SWC.")
    parser.add_argument("--out", type=Path, default=DEFAULT_MORPHOLOGY)
    args = parser.parse_args()
    args.out.write_text(generate_swc())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
