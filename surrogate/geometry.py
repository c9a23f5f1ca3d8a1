"""Where each input sits in its cell, and which segment of another cell sits at the same place.

A surrogate's input row is a dendritic segment (its excitatory and its inhibitory channel).
Between two cells, rows in the same position of the segment order can lie in quite different
places — cells differ in how many basal trees they have, how long their trunk is, where the
tuft begins — so a warm start that maps weights by row position hands a synapse on a distal
tuft branch the weight learned for an oblique. This module places every segment by landmarks
both cells share and matches each target segment to the nearest source segment:

- its **subtree**: basal; apical up to the nexus (the trunk and its obliques); the tuft beyond;
- its **landmark position**: basal path distance relative to the farthest basal point; apical
  path distance relative to the nexus, −1 at the soma, 0 at the nexus and +1 at the farthest
  tuft point (l_max), so that cells with longer trunks or tufts line up at the nexus;
- its **path distance** in µm (the attenuation of a synaptic potential grows with it);
- its **diameter** (log; thin branches have high input impedance: larger local depolarisation
  for the same conductance).

Matches are made only within a subtree (when the source has that subtree). A cell is described
by the ``cell`` record every dataset stores (:meth:`CellGeometry.from_record`); checkpoints keep
that record of their training data, so the source of a warm start knows its cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SUBTREES = ("basal", "apical up to the nexus", "tuft")
#: weights of the standardised features in the match distance: landmark position, path distance
#: (per mm), log diameter
FEATURE_WEIGHTS = (1.0, 0.5, 0.3)


@dataclass(frozen=True)
class CellGeometry:
    """Per segment (input row): region, path distance from the soma (µm) and diameter (µm); and
    the cell's landmarks: l_max (the longest apical path) and the nexus's path distance."""

    region: np.ndarray
    distance: np.ndarray
    diam: np.ndarray
    l_max: float
    nexus_distance: float

    @classmethod
    def from_record(cls, cell: dict[str, Any]) -> CellGeometry:
        """From a dataset's ``cell`` attribute (or a checkpoint's copy of it)."""
        try:
            table = cell["segment_table"]
            return cls(
                region=np.asarray(table["region"], dtype=str),
                distance=np.asarray(table["distance"], dtype=np.float64),
                diam=np.asarray(table["diam"], dtype=np.float64),
                l_max=float(cell["l_max_um"]),
                nexus_distance=float(cell["nexus"]["distance_um"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the cell record has no segment table or landmarks ({exc})") from None

    def record(self) -> dict[str, Any]:
        """What :meth:`from_record` needs, and no more (kept in checkpoints)."""
        return {
            "segment_table": {
                "region": self.region.tolist(),
                "distance": self.distance.tolist(),
                "diam": self.diam.tolist(),
            },
            "l_max_um": self.l_max,
            "nexus": {"distance_um": self.nexus_distance},
        }

    def __len__(self) -> int:
        return len(self.region)

    def subtree(self) -> np.ndarray:
        """0 basal, 1 apical up to the nexus, 2 tuft."""
        apical = self.region == "apical"
        return np.where(apical, np.where(self.distance > self.nexus_distance, 2, 1), 0)

    def landmark_position(self) -> np.ndarray:
        """Basal: distance / farthest basal distance (0 … 1). Apical: −1 at the soma, 0 at the
        nexus, +1 at l_max."""
        basal = self.region == "basal"
        farthest_basal = float(self.distance[basal].max()) if basal.any() else 1.0
        nexus = max(self.nexus_distance, 1e-9)
        tuft = max(self.l_max - self.nexus_distance, 1e-9)
        apical = np.where(
            self.distance <= nexus,
            (self.distance - nexus) / nexus,
            (self.distance - nexus) / tuft,
        )
        return np.where(basal, self.distance / max(farthest_basal, 1e-9), apical)

    def features(self) -> np.ndarray:
        """(segments, 3): landmark position, path distance (mm), log diameter, each weighted."""
        raw = np.stack(
            [
                self.landmark_position(),
                self.distance / 1000.0,
                np.log(np.maximum(self.diam, 1e-3)),
            ],
            axis=1,
        )
        return raw * np.asarray(FEATURE_WEIGHTS)


def nearest_sources(target: CellGeometry, source: CellGeometry) -> np.ndarray:
    """For each target segment, the source segment nearest in features, within its subtree
    (any source segment where the source has none of that subtree)."""
    features_t, features_s = target.features(), source.features()
    subtree_t, subtree_s = target.subtree(), source.subtree()
    match = np.empty(len(target), dtype=np.int64)
    for kind in range(len(SUBTREES)):
        rows = np.flatnonzero(subtree_t == kind)
        if rows.size == 0:
            continue
        candidates = np.flatnonzero(subtree_s == kind)
        if candidates.size == 0:
            candidates = np.arange(len(source))
        gaps = features_t[rows, None, :] - features_s[None, candidates, :]
        match[rows] = candidates[np.argmin(np.einsum("tsk,tsk->ts", gaps, gaps), axis=1)]
    return match


def segment_order_like(
    match: np.ndarray, target: CellGeometry, source_order: Sequence[int] | None = None
) -> tuple[int, ...]:
    """The order in which a target model's routing should walk its segments so that its
    branches read where the source model's branches read: by the position of each target
    segment's match in the source's own order, ties by path distance."""
    rank = np.arange(match.max() + 1) if source_order is None else np.argsort(list(source_order))
    return tuple(int(i) for i in np.lexsort((target.distance, rank[match])))
