"""The field's morphology files: SWC variants, ASC, HDF5 v1/v2; naming the apical tree; hostile
files refused with the reason; one channel order per cell, or a refused replay and comparison.

Every file is small and written here (tests/morphology_files.py), never downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from elmpipe.dataset import DatasetError, prepare_split
from elmpipe.dataset.compare import compare, segment_table_check
from simulations.cell import Cell, CellSpec
from simulations.morphology import MorphologyError, morphology_trees
from tests.morphology_files import (
    ASC,
    SWC_DENDRITES,
    SWC_SOMA,
    asc_without_apical_tag,
    good_asc,
    good_swc,
    h5_v1,
    h5_v2,
    swc_contour_soma,
    swc_with_blank_lines,
    write_swc,
)


def same_table(a: Cell, b: Cell) -> None:
    """Identical segment tables: names, regions and order exactly, numbers to 1e-9 µm."""
    ta, tb = a.segments, b.segments
    assert list(ta.section) == list(tb.section)
    assert list(ta.region) == list(tb.region)
    assert list(ta.section_index) == list(tb.section_index)
    for column in ("x", "length", "area", "diam", "distance", "xyz"):
        np.testing.assert_allclose(getattr(ta, column), getattr(tb, column), atol=1e-9)


# -- valid files load ------------------------------------------------------------------------


def test_swc_with_blank_lines_and_comments_is_the_same_cell(tmp_path):
    blank = Cell(swc_with_blank_lines(tmp_path))
    assert blank.segments.to_dict() == Cell(good_swc(tmp_path)).segments.to_dict()


def test_swc_contour_soma_loads(tmp_path):
    cell = Cell(swc_contour_soma(tmp_path))
    assert len(cell.soma) == 1 and len(cell.dend) == 2 and len(cell.apic) == 3
    assert cell.soma[0].L > 0 and cell.soma[0].diam > 0


@pytest.mark.parametrize("stage", ["raw", "unraveled", "repaired"])
def test_asc_and_its_h5_v1_and_v2_are_one_cell(tmp_path, stage):
    asc = Cell(good_asc(tmp_path))
    v1 = Cell(h5_v1(good_asc(tmp_path), tmp_path / "cell.h5"))
    v2 = Cell(h5_v2(good_asc(tmp_path), tmp_path / "cell-v2.h5", stage))
    same_table(asc, v1)
    same_table(asc, v2)
    assert asc.fingerprint() != v1.fingerprint()  # the file's bytes are part of the identity


def test_a_path_with_non_ascii_characters_loads(tmp_path):
    folder = tmp_path / "zellen-ü"
    folder.mkdir()
    for name, text in (("zelle-ü.asc", ASC), ("zelle-ü.swc", None)):
        path = folder / name
        if text is None:
            write_swc(path, SWC_SOMA + SWC_DENDRITES)
        else:
            path.write_text(text)
        cell = Cell(path)
        assert len(cell.apic) == 3 and cell.morphology_path == path


# -- one order per cell ------------------------------------------------------------------------


def test_the_same_cell_as_asc_and_swc_has_one_channel_order_or_is_told_apart(tmp_path):
    """The ASC cell written as SWC by MorphIO's writer: Import3d's SWC reader splits the trees
    into other sections (and the soma is another shape), so the channel order is not the same.
    The check that guards replays and comparisons must say so, naming rows — never let it pass."""
    from morphio.mut import Morphology

    asc_path = good_asc(tmp_path)
    swc_path = tmp_path / "as-swc.swc"
    Morphology(str(asc_path)).write(str(swc_path))
    asc, swc = Cell(asc_path), Cell(swc_path)
    try:
        same_table(asc, swc)
        identical = True
    except AssertionError:
        identical = False
    difference, _ = segment_table_check(asc.provenance(), swc.provenance(), ("asc", "swc"))
    assert (difference is None) == identical
    assert not identical and difference is not None
    assert difference.startswith(f"asc has {len(asc.segments)} dendritic segments, swc")


def test_a_different_tree_order_is_refused_with_the_first_differing_rows(tmp_path):
    """The same tree written in another order (as converters do) moves input rows: refused."""
    a = Cell(good_swc(tmp_path))
    basal_swapped = ["4 3 -8 0 0 1 1", "5 3 -60 -10 0 0.8 4", "6 3 8 0 0 1 1", "7 3 50 0 0 0.8 6"]
    lines = SWC_SOMA + basal_swapped + SWC_DENDRITES[4:]
    b = Cell(write_swc(tmp_path / "swapped.swc", lines))
    assert len(a.segments) == len(b.segments)
    difference, _ = segment_table_check(a.provenance(), b.provenance(), ("a", "b"))
    assert difference is not None
    assert difference.startswith("6 of 25 segment rows differ")
    assert "row 0:" in difference and "length" in difference


# -- naming the apical tree ------------------------------------------------------------------


def test_a_file_without_an_apical_tag_says_how_to_name_one(tmp_path):
    path = asc_without_apical_tag(tmp_path)
    with pytest.raises(MorphologyError) as info:
        Cell(path)
    message = str(info.value)
    assert str(path) in message and "no apical dendrites" in message
    assert "--apical-trees" in message and "cell.apical_trees" in message
    assert "tree 0: basal, starts at (8.0, 0.0, 0.0) µm, 114.1 µm of dendrite" in message
    assert "tree 1: basal, starts at (0.0, 8.0, 0.0) µm, 400.8 µm of dendrite" in message
    assert [t.index for t in morphology_trees(path)] == [0, 1]


def test_naming_the_apical_tree_gives_the_tagged_cell(tmp_path):
    tagged = Cell(good_asc(tmp_path))
    named = Cell(asc_without_apical_tag(tmp_path), apical_trees=[1])
    same_table(tagged, named)
    assert named.summary()["apical_trees"] == [1]
    # in SWC (type 3 everywhere) and in HDF5 too
    lines = [line if line.split()[1] != "4" else line.replace(" 4 ", " 3 ", 1) for line in
             SWC_SOMA + SWC_DENDRITES]  # fmt: skip
    swc = Cell(write_swc(tmp_path / "untagged.swc", lines), apical_trees=[2])
    same_table(Cell(good_swc(tmp_path)), swc)
    h5 = Cell(h5_v1(asc_without_apical_tag(tmp_path), tmp_path / "untagged.h5"), apical_trees=[1])
    same_table(tagged, h5)


def test_apical_trees_override_the_tags(tmp_path):
    cell = Cell(good_swc(tmp_path), apical_trees=[0, 2])
    assert len(cell.dend) == 1 and len(cell.apic) == 4


@pytest.mark.parametrize("trees", [[2], [1, 1], [-1]])
def test_apical_trees_must_name_trees_of_the_file(tmp_path, trees):
    with pytest.raises(MorphologyError, match=r"numbered 0 … 1 in file order:\n  tree 0"):
        Cell(asc_without_apical_tag(tmp_path), apical_trees=trees)


def test_apical_trees_are_part_of_the_fingerprint_only_when_set(tmp_path):
    path = good_asc(tmp_path)
    plain, named = Cell(path), Cell(path, apical_trees=[1])
    identity = {
        "morphology_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "parameters": plain.parameters.model_dump(mode="json"),
        "max_segment_length": 40.0,
        "nexus": [plain.nexus.section, plain.nexus.x],
    }
    expected = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    assert plain.fingerprint() == expected  # as before the option existed: stores stay growable
    assert named.fingerprint() != plain.fingerprint()
    assert "apical_trees" not in plain.summary()


def test_apical_trees_in_config_and_on_the_command_line(tmp_path):
    from pipelines.cli import cli
    from pipelines.config import SimulateConfig

    path = asc_without_apical_tag(tmp_path)
    config = SimulateConfig.model_validate({"cell": {"morphology": str(path), "apical_trees": [1]}})
    assert config.cell.apical_trees == [1]
    assert len(config.cell.build().apic) == 3
    with pytest.raises(ValueError):
        CellSpec(apical_trees=[-1])
    runner = CliRunner()
    refused = runner.invoke(cli, ["cell", "info", "--no-sim", "-m", str(path)])
    assert refused.exit_code == 2 and "--apical-trees" in refused.output
    named = runner.invoke(cli, ["cell", "info", "--no-sim", "-m", str(path), "--apical-trees", "1"])
    assert named.exit_code == 0, named.output
    assert "apical 3" in named.output


# -- hostile files -----------------------------------------------------------------------------


def swc_plus(tmp_path, name: str, *extra: str, replace: dict[int, str] | None = None):
    lines = list(SWC_SOMA + SWC_DENDRITES)
    for index, line in (replace or {}).items():
        lines[index] = line
    return write_swc(tmp_path / name, [*lines, *extra])


HOSTILE_SWC = {
    "fractional type": (
        {"replace": {8: "9 3.9 0 200 0 1.5 8"}},
        r"line 10: the type field '3\.9' is not an integer",
    ),
    "huge ids": (
        {"extra": ["1000000000000000 3 60 0 0 0.5 5"]},
        r"sample id 1000000000000000 is outside 0 … 4294967295",
    ),
    "second soma": (
        {"extra": ["14 1 300 0 0 5 -1", "15 3 300 -10 0 1 14"]},
        r"line 15: a second soma \(sample 14, parent -1\) not connected to the first",
    ),
    "orphan neurite": (
        {"extra": ["14 4 0 700 0 1 -1", "15 4 0 800 0 1 14"]},
        r"line 15: apical dendrite sample 14 has parent -1: a neurite not connected to the soma",
    ),
    "disconnected component": (
        {"extra": ["15 2 0 -120 0 1 -1", "16 2 0 -200 0 1 15"]},
        r"axon sample 15 has parent -1: .*disconnected component",
    ),
    "dangling dendrite": (
        {"extra": ["14 3 150 0 0 1 1", "15 3 250 0 0 1 14"]},
        r"dendrite tree 3: basal, starts at \(150\.0, 0\.0, 0\.0\) µm.*142\.0 µm beyond the "
        r"soma's outline.*dangling",
    ),
    "huge radius": (
        {"replace": {8: "9 4 0 200 0 1e9 8"}},
        r"an apical dendrite has a diameter of 2e\+09 µm",
    ),
    "huge coordinate": (
        {"replace": {9: "10 4 30 1e30 0 1 9"}},
        r"an apical dendrite has a point 1e\+30 µm from the origin",
    ),
}


@pytest.mark.parametrize("case", HOSTILE_SWC)
def test_hostile_swc_is_refused_with_the_reason(tmp_path, case):
    options, message = HOSTILE_SWC[case]
    path = swc_plus(
        tmp_path, "hostile.swc", *options.get("extra", []), replace=options.get("replace")
    )
    with pytest.raises(MorphologyError, match=message) as info:
        Cell(path)
    assert str(path) in str(info.value)


def test_soma_child_of_a_neurite_is_refused(tmp_path):
    lines = ["1 3 0 0 1 0.5 -1", "2 3 0 0 2 0.5 1", "3 1 0 0 0 8 2", "4 4 0 10 0 2 3",
             "5 4 0 200 0 1 4", "6 3 0 -10 0 1 3", "7 3 0 -50 0 1 6"]  # fmt: skip
    path = write_swc(tmp_path / "upside-down.swc", lines)
    with pytest.raises(MorphologyError, match="soma sample 3 is the child of basal dendrite"):
        Cell(path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("( 50.0 0.0 0.0 0.8)", "( 50.0 0.0 0.0 nan)", "non-finite coordinate or diameter"),
        ("( 0.0 200.0 0.0 1.5)", "( 0.0 1e30 0.0 1.5)", r"1e\+30 µm from the origin"),
        ("( 8.0 0.0 0.0 0.5)", "( 8.0 zero 0.0 0.5)", 'line 6: Error converting: "zero"'),
    ],
)
def test_hostile_asc_is_refused_with_the_reason(tmp_path, old, new, message):
    path = tmp_path / "hostile.asc"
    path.write_text(ASC.replace(old, new, 1))
    with pytest.raises(MorphologyError, match=message) as info:
        Cell(path)
    assert str(path) in str(info.value)


def test_hostile_h5_is_refused_with_the_reason(tmp_path):
    import h5py

    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(MorphologyError, match=r"junk\.h5: it is not an HDF5 file"):
        Cell(junk)
    empty_v2 = tmp_path / "empty-v2.h5"
    with h5py.File(empty_v2, "w") as f:
        f.create_group("neuron1")
    with pytest.raises(MorphologyError, match=r"HDF5 v2 file .* without"):
        Cell(empty_v2)
    # a soma "contour" on a line (what a three-point SWC soma becomes in HDF5) crashes Import3d
    flat = h5_v1(good_swc(tmp_path), tmp_path / "flat.h5")
    with pytest.raises(MorphologyError, match="soma contour's 3 points lie on a line"):
        Cell(flat)


@pytest.mark.parametrize(
    ("line", "message"),
    [("9 3.9 0 200 0 1.5 8", "the type field '3.9' is not an integer"),
     ("9 4 0 200 0 1.5 8\n1000000000000000 3 0 -5 0 1 1", "is outside 0")],
)  # fmt: skip
def test_files_that_crashed_the_process_end_in_exit_code_2(tmp_path, line, message):
    """A fractional SWC type and ids near 1e15 used to end in a segfault with no message."""
    lines = list(SWC_SOMA + SWC_DENDRITES)
    lines[8] = line
    path = write_swc(tmp_path / "crash.swc", lines)
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "cell", "info", "--no-sim", "-m", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and str(path) in done.stderr


# -- replays and comparisons across cells ------------------------------------------------------


def store_of(path, cell: dict, n_seg: int):
    from tests.test_store import make_spec

    spec = make_spec(
        cell=cell,
        channels={"segment": [*range(n_seg), *range(n_seg)], "kind": ["excitatory"] * n_seg
                  + ["inhibitory"] * n_seg},
    )  # fmt: skip
    prepare_split(path, spec, "test", 1)
    return path, spec


def test_compare_and_replay_refuse_another_cell(tmp_path):
    from pipelines.simulation_stage import _check_replay
    from simulations.inputs import ReplayProtocol

    a = Cell(good_swc(tmp_path)).provenance()
    b = dict(
        a, segment_table=dict(a["segment_table"], section_index=[0] * len(a["segment_table"]["x"]))
    )
    n = len(a["segment_table"]["x"])
    ref, _ = store_of(tmp_path / "a.zarr", a, n)
    other, other_spec = store_of(tmp_path / "b.zarr", b, n)
    with pytest.raises(DatasetError, match=r"not come from the same cell.*section_index"):
        compare(ref, other)
    with pytest.raises(DatasetError, match=r"replay source was not simulated on this cell.*row 3"):
        _check_replay(ReplayProtocol(source=str(ref), split="test"), other_spec, 0)
    same, _ = store_of(tmp_path / "c.zarr", a, n)
    report = compare(ref, same)
    assert report["cells"].startswith(f"segment tables compared row by row ({n} rows: section")


def test_without_a_recorded_table_only_channel_counts_are_compared_and_said(tmp_path, caplog):
    n = 5
    ref, _ = store_of(tmp_path / "a.zarr", {"fingerprint": "neuronio-x"}, n)
    cand, _ = store_of(tmp_path / "b.zarr", {"fingerprint": "y", "segment_table": {
        "region": ["basal"] * n, "section_index": list(range(n))}}, n)  # fmt: skip
    report = compare(ref, cand)
    assert "the reference records no segment table" in report["cells"]
    assert "only the numbers of input channels were compared" in report["cells"]
    from pipelines.simulation_stage import _check_replay
    from simulations.inputs import ReplayProtocol
    from tests.test_store import make_spec

    spec = make_spec(cell={"fingerprint": "z", "segment_table": {"region": ["basal"] * n}})
    with caplog.at_level(logging.WARNING):
        _check_replay(ReplayProtocol(source=str(ref), split="test"), spec, 0)
    assert "records no segment table: only the numbers of input channels" in caplog.text


def test_an_imported_table_is_compared_by_region_and_section_starts():
    """NeuronIO numbers sections across both regions (apical after basal), elmpipe within each
    region: an import is compared by region and where sections start, not by the numbers."""
    imported = {
        "segment_table": {
            "region": ["basal", "basal", "apical"],
            "section_index": [0, 0, 1],
            "length": [1.0, 1.0, 2.0],
        }
    }
    ours = {
        "segment_table": {
            "section": ["dend[0]", "dend[0]", "apic[0]"],
            "region": ["basal", "basal", "apical"],
            "section_index": [0, 0, 0],
            "length": [1.5, 1.5, 2.5],
        }
    }
    difference, compared = segment_table_check(imported, ours, ("imported", "ours"))
    assert difference is None and "region, section_start" in compared
    moved = {"segment_table": dict(ours["segment_table"], region=["apical", "basal", "basal"])}
    difference, _ = segment_table_check(imported, moved, ("imported", "ours"))
    assert difference.startswith("3 of 3 segment rows differ (region, section_start) between")
    assert "first row 0: region basal vs apical; row 1: section_start False vs True" in difference
    split = {"segment_table": dict(ours["segment_table"], section_index=[0, 1, 0])}
    difference, _ = segment_table_check(imported, split, ("imported", "ours"))
    assert difference is not None and "row 1: section_start False vs True" in difference
