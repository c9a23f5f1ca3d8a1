"""The Hay cell, exactly: every mechanism on every segment equals the reference model's.

``../shared/data/reference/hay-5b-segment-conductances.csv`` holds, for every segment of the
original NeuronIO template instantiated under NEURON 9.0.2, its passive properties, reversal
potentials, calcium dynamics and every channel's maximal conductance (empty where the mechanism is
absent). The CSV prints values as Python does (shortest round trip), the distance-dependent Ih
values rounded to 10 decimals; so a value matches when it agrees to 1e-9 relative, or to the
CSV's rounding (half of 1e-10 S/cm²) where that is coarser.
"""

from __future__ import annotations

import csv
import math

import pytest

from tests.conftest import SHARED

CSV = SHARED / "data" / "reference" / "hay-5b-segment-conductances.csv"
LOCATION = ("region", "section", "x", "dist_soma0_um", "dist_apic0_um")
ROUNDING = 0.5e-10 * (1 + 1e-6)  # the CSV's 10-decimal rounding of the Ih values


@pytest.fixture(scope="module")
def reference_rows():
    if not CSV.exists():
        pytest.skip(f"reference table not available at {CSV} (../shared is absent)")
    with open(CSV, newline="") as handle:
        return list(csv.DictReader(handle))


def value_on(cell, seg, column: str) -> float | None:
    """What our cell has on ``seg`` for a CSV column (None where the mechanism is absent)."""
    from simulations._neuron import hoc

    sec = seg.sec
    if column == "cm":
        return seg.cm
    if column == "Ra":
        return sec.Ra
    if column in ("g_pas", "e_pas"):
        return getattr(seg.pas, column[0]) if hasattr(seg, "pas") else None
    if column in ("ek", "ena"):
        ion = {"ek": "k_ion", "ena": "na_ion"}[column]
        return getattr(seg, column) if hoc().ismembrane(ion, sec=sec) else None
    if column.startswith(("gamma_", "decay_")):
        parameter, mechanism = column.split("_", 1)
        return getattr(getattr(seg, mechanism), parameter) if hasattr(seg, mechanism) else None
    mechanism = column.split("bar_", 1)[1]  # gIhbar_Ih → Ih (our NMODL calls it gbar)
    return getattr(seg, mechanism).gbar if hasattr(seg, mechanism) else None


def test_every_segment_matches_the_reference_table(hay_cell, reference_rows):
    sections = {hay_cell.short_name(sec): sec for sec in hay_cell.all}
    assert len(reference_rows) == 642 == sum(sec.nseg for sec in hay_cell.all)
    columns = [c for c in reference_rows[0] if c not in LOCATION]
    assert len(columns) == 19
    mismatches = []
    for row in reference_rows:
        seg = sections[row["section"]](float(row["x"]))
        assert math.isclose(seg.x, float(row["x"]), abs_tol=1e-6), row["section"]
        for column in columns:
            ours, text = value_on(hay_cell, seg, column), row[column]
            if text == "":
                if ours is not None:
                    mismatches.append(f"{row['section']}({row['x']}) {column}: absent there")
                continue
            reference = float(text)
            tolerance = max(1e-9 * abs(reference), ROUNDING)
            if ours is None or abs(ours - reference) > tolerance:
                mismatches.append(f"{row['section']}({row['x']}) {column}: {ours} ≠ {text}")
    assert not mismatches, f"{len(mismatches)} values differ:\n" + "\n".join(mismatches[:20])


def test_distances_follow_the_reference_conventions(hay_cell, reference_rows):
    """Segment-table distances are from soma(0); the apical rules measure from apic[0](0)."""
    from simulations._neuron import hoc

    sections = {hay_cell.short_name(sec): sec for sec in hay_cell.all}
    for row in reference_rows:
        seg = sections[row["section"]](float(row["x"]))
        assert hay_cell.distance(seg) == pytest.approx(float(row["dist_soma0_um"]), abs=5e-4)
        if row["dist_apic0_um"]:
            from_root = hoc().distance(hay_cell.apical_origin(), seg)
            assert from_root == pytest.approx(float(row["dist_apic0_um"]), abs=5e-4)
