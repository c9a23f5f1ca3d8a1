"""Loading morphologies: formats, discretisation, axon replacement, ordering, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from simulations.cell import Cell
from simulations.morphology import MorphologyError
from tests.morphology_files import SWC_DENDRITES, SWC_SOMA, good_asc, good_swc, write_swc


@pytest.fixture(params=["swc", "asc"])
def small_cell(request, tmp_path):
    path = good_swc(tmp_path) if request.param == "swc" else good_asc(tmp_path)
    return Cell(path)


def test_sections_by_type(small_cell):
    assert len(small_cell.soma) == 1
    assert len(small_cell.dend) >= 2
    assert len(small_cell.apic) == 3


def test_nseg_rule(small_cell):
    for sec in small_cell.all:
        assert sec.nseg == 1 + 2 * int(sec.L / 40.0)
        assert sec.L / sec.nseg <= 40.0
    longer = Cell(small_cell.morphology_path, max_segment_length=20.0)
    assert longer.apic[0].nseg == 1 + 2 * int(longer.apic[0].L / 20.0)


def test_axon_is_replaced_by_two_stubs(small_cell):
    axon = small_cell.axon
    assert len(axon) == 2
    assert [sec.L for sec in axon] == [30.0, 30.0]
    assert all(seg.diam == pytest.approx(1.0) for sec in axon for seg in sec)
    assert [sec.nseg for sec in axon] == [1, 1]
    assert axon[0].parentseg().sec == small_cell.soma[0]
    assert axon[0].parentseg().x == 0.5
    assert axon[1].parentseg().sec == axon[0]
    assert axon[1].parentseg().x == 1.0
    names = [small_cell.short_name(sec) for sec in small_cell.all]
    assert names.count("axon[0]") == 1  # the reconstructed axon is gone


def test_segment_table_order_and_columns(small_cell):
    table = small_cell.segments
    n_basal = sum(sec.nseg for sec in small_cell.dend)
    assert list(table.region) == ["basal"] * n_basal + ["apical"] * (len(table) - n_basal)
    expected = [
        (small_cell.short_name(sec), seg.x)
        for sec in [*small_cell.dend, *small_cell.apic]
        for seg in sec
    ]
    assert list(zip(table.section, table.x, strict=True)) == expected
    for name in set(table.section):
        rows = table.section == name
        assert np.all(np.diff(table.x[rows]) > 0)
        sec = small_cell.section(name)
        start = small_cell.distance(sec(0))
        np.testing.assert_allclose(table.distance[rows], start + sec.L * table.x[rows])
        np.testing.assert_allclose(table.length[rows], sec.L / sec.nseg)
    assert table.area.sum() == pytest.approx(
        sum(seg.area() for sec in [*small_cell.dend, *small_cell.apic] for seg in sec)
    )
    segments = small_cell.dendritic_segments()
    assert segments[0].sec == small_cell.dend[0]
    assert len(segments) == len(table)


def test_distances_start_at_soma_zero_end(small_cell):
    soma = small_cell.soma[0]
    # apical root attaches at soma(0.5): its 0 end is half a soma away from soma(0)
    assert small_cell.distance(small_cell.apic[0](0)) == pytest.approx(soma.L / 2)


def test_longest_apical_path_and_nexus_on_main_path(small_cell):
    apic0, apic1 = small_cell.apic[0], small_cell.apic[1]
    assert small_cell.l_max == pytest.approx(apic0.L + apic1.L)
    nexus = small_cell.nexus
    assert nexus.section in {small_cell.short_name(s) for s in small_cell.main_apical_path()}


def test_explicit_nexus(small_cell):
    cell = Cell(small_cell.morphology_path, nexus="apic[1](0.5)")
    assert cell.nexus.section == "apic[1]"
    with pytest.raises(MorphologyError, match=r"apic\[9\]"):
        Cell(small_cell.morphology_path, nexus="apic[9](0.5)")
    with pytest.raises(ValueError, match="form"):
        Cell(small_cell.morphology_path, nexus="the top")


# -- bad input --------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(MorphologyError, match="not found"):
        Cell(tmp_path / "nope.asc")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("cell.obj", "x", r"unknown morphology format '\.obj'"),
        ("cell.h5", "x", "is not an HDF5 file"),
        ("cell.swc", "", "empty"),
        ("junk.asc", "(this is (not a) morphology 12 x)\n", "could not parse morphology"),
    ],
)
def test_unusable_file(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MorphologyError, match=message):
        Cell(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("14 3 1 1", "expected 7 fields"),
        ("14 3 1 one 1 1 13", "non-numeric"),
        ("14 3 1 1 1 1 99", "parent 99"),
        ("13 3 1 1 1 1 12", "duplicate sample id 13"),
        ("14 7 1 1 1 1 13", "unsupported SWC structure types type 7"),
        ("14 3 1 1 1 -0.5 13", r"line 15: sample 14 has a negative radius \(-0.5 µm\)"),
    ],
)
def test_broken_swc(tmp_path, line, message):
    path = write_swc(tmp_path / "broken.swc", [*SWC_SOMA, *SWC_DENDRITES, line])
    with pytest.raises(MorphologyError, match=message) as info:
        Cell(path)
    assert "broken.swc" in str(info.value)


def test_truncated_asc(tmp_path):
    path = good_asc(tmp_path)
    path.write_text(path.read_text()[:300])
    with pytest.raises(MorphologyError, match="never closed"):
        Cell(path)


@pytest.mark.parametrize(
    ("drop_type", "what"), [("1", "soma"), ("3", "basal dendrites"), ("4", "apical dendrites")]
)
def test_missing_parts(tmp_path, drop_type, what):
    lines = [line for line in SWC_SOMA + SWC_DENDRITES if line.split()[1] != drop_type]
    if drop_type == "1":  # re-root the tree at the first remaining sample
        lines = [" ".join(["4", "3", "8", "0", "0", "1", "-1"]), *SWC_DENDRITES[1:2]]
        lines += ["8 4 0 8 0 2 -1", "9 4 0 200 0 1.5 8"]
    path = write_swc(tmp_path / "partial.swc", lines)
    with pytest.raises(MorphologyError, match=f"no {what}"):
        Cell(path)


def test_zero_length_section(tmp_path):
    extra = ["14 3 -60 -10 0 0.8 7", "15 3 -60 -10 0 0.8 14", "16 3 -80 -10 0 0.8 7"]
    path = write_swc(tmp_path / "flat.swc", [*SWC_SOMA, *SWC_DENDRITES, *extra])
    with pytest.raises(MorphologyError, match=r"dend\[\d+\] has zero length"):
        Cell(path)


def test_zero_diameter_section(tmp_path):
    lines = [*SWC_SOMA, *SWC_DENDRITES]
    lines[len(SWC_SOMA) + 7] = "11 4 -30 300 0 0 9"
    path = write_swc(tmp_path / "thin.swc", [*lines, "14 4 -50 330 0 0 11"])
    with pytest.raises(MorphologyError, match=r"apic\[\d+\] has zero diameter"):
        Cell(path)


def test_bad_input_leaves_nothing_behind(tmp_path):
    """A failed load must not leave stray sections in NEURON that later cells would inherit."""
    from simulations._neuron import hoc

    h = hoc()
    before = sum(1 for _ in h.allsec())
    path = write_swc(tmp_path / "noapic.swc", [*SWC_SOMA, *SWC_DENDRITES[:4]])
    with pytest.raises(MorphologyError):
        Cell(path)
    import gc

    gc.collect()
    assert sum(1 for _ in h.allsec()) == before


def test_good_file_loads_after_a_parse_error(tmp_path):
    """Import3d's Neurolucida reader breaks hoc on a syntax error; that must not leak into us."""
    junk = tmp_path / "junk.asc"
    junk.write_text("(this is (not a) morphology 12 x)\n")
    with pytest.raises(MorphologyError):
        Cell(junk)
    cell = Cell(good_asc(tmp_path))
    assert len(cell.soma) == 1 and len(cell.apic) == 3
