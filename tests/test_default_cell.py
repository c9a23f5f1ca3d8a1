"""The built-in default cell: deterministic, shipped, L5PC-like in shape and in behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from simulations import electrophysiology as ephys
from simulations.default_morphology import Design, generate_swc
from simulations.morphology import default_morphology_path


def test_shipped_file_is_what_the_generator_makes():
    assert default_morphology_path().read_text() == generate_swc()


def test_generator_is_deterministic_and_seeded():
    assert generate_swc() == generate_swc()
    assert generate_swc(Design(seed=1)) != generate_swc()


def test_geometry_is_pyramidal(default_cell):
    info = default_cell.summary()
    roots = [sec for sec in default_cell.dend if sec.parentseg().sec == default_cell.soma[0]]
    assert len(roots) >= 4  # several basal trees
    assert len(default_cell._apical_roots()) == 1  # one apical trunk
    assert 800 <= default_cell.l_max <= 1400
    assert 2000 <= info["length_um"]["basal"] <= 6000
    assert 3000 <= info["length_um"]["apical"] <= 9000
    assert info["segments"]["dendritic"] < 639  # smaller than the Hay cell: quick demos
    # tapering trunk, thin tuft
    trunk = default_cell.main_apical_path()
    diams = [sec(0.5).diam for sec in trunk]
    assert diams[0] > 3.0 > diams[-1]
    assert np.all(np.diff(diams) <= 1e-9)
    # obliques leave the trunk below the nexus; the tuft branches above it
    assert all(len(list(sec.children())) >= 1 for sec in trunk[:-1])


def test_nexus_sits_below_the_main_bifurcation(default_cell):
    nexus = default_cell.nexus
    section = default_cell.section(nexus.section)
    assert len(list(section.children())) == 2
    assert nexus.distance == pytest.approx(0.53 * default_cell.l_max, rel=0.05)


def test_rests(default_cell):
    soma, nexus = ephys.resting_potential(default_cell)
    assert -84.0 < soma < -76.0
    assert soma < nexus  # Ih depolarises the distal apical dendrite, as in the Hay cell


def test_input_resistance(default_cell):
    assert 30.0 < ephys.input_resistance(default_cell) < 90.0


def test_fires_under_current_injection(default_cell):
    quiet = ephys.spikes_during_step(ephys.current_step(default_cell, 0.2))
    firing = ephys.spikes_during_step(ephys.current_step(default_cell, 0.8))
    assert len(quiet) == 0
    assert 5 <= len(firing) <= 40


def test_variants_are_other_cells_of_the_same_kind(tmp_path):
    """`elmpipe cell generate`: another random stream and size gives another valid cell; the
    built-in seed at scale 1 is the built-in cell itself."""
    from click.testing import CliRunner

    from pipelines.cli import cli
    from simulations.cell import Cell
    from simulations.default_morphology import Design, generate_swc, variant

    assert variant(Design().seed) == Design()
    assert generate_swc(variant(1)) != generate_swc(variant(2))
    runner = CliRunner()
    sizes = {}
    for name, args in {"small": ["--scale", "0.8"], "large": ["--scale", "1.3"]}.items():
        path = tmp_path / "cells" / f"{name}.swc"  # a folder not made yet, as in the docs
        done = runner.invoke(cli, ["cell", "generate", "-o", str(path), "--seed", "3", *args])
        assert done.exit_code == 0, done.output
        sizes[name] = Cell(path).l_max
    assert 1.4 < sizes["large"] / sizes["small"] < 1.9  # lengths × 1.3 / 0.8, branching aside
    refused = runner.invoke(
        cli, ["cell", "generate", "-o", str(tmp_path / "x.swc"), "--scale", "5"]
    )
    assert refused.exit_code == 2 and "--scale" in refused.output
