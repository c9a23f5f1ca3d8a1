"""The Hay et al. reconstruction with the 5b set reproduces the documented anchors.

Needs ../shared/data/morphologies/cell1.asc; skipped with a clear reason when it is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulations import electrophysiology as ephys


def test_segment_counts(hay_cell):
    table = hay_cell.segments
    assert len(table) == 639
    assert table.n_basal == 262
    assert table.n_apical == 377
    assert len(hay_cell.dend) == 84
    assert len(hay_cell.apic) == 109
    assert sum(sec.nseg for sec in hay_cell.all) == 642
    assert len(hay_cell.all) == 196
    assert table.length.min() == pytest.approx(1.7, abs=0.05)
    assert table.length.max() == pytest.approx(39.9, abs=0.05)


def test_lengths_and_soma(hay_cell):
    info = hay_cell.summary()
    assert info["length_um"]["basal"] == pytest.approx(5133.5, abs=0.5)
    assert info["length_um"]["apical"] == pytest.approx(7440.9, abs=0.5)
    assert hay_cell.soma[0].L == pytest.approx(23.17, abs=0.01)
    assert hay_cell.soma[0].diam == pytest.approx(13.47, abs=0.01)


def test_longest_apical_path_and_nexus(hay_cell):
    assert hay_cell.l_max == pytest.approx(1300.5, abs=0.5)
    nexus = hay_cell.nexus
    assert nexus.section == "apic[50]"
    # same compartment as NeuronIO's apic[50](0.9)
    assert hay_cell.location(nexus) == hay_cell.apic[50](0.9)
    assert nexus.distance == pytest.approx(690.0, abs=1.0)
    assert nexus.diam == pytest.approx(1.8, abs=0.01)


def test_distance_dependent_channels(hay_cell):
    table = hay_cell.segments
    apical = table.region == "apical"
    segments = hay_cell.dendritic_segments()
    lva = np.array([seg.Ca_LVAst.gbar for seg, a in zip(segments, apical, strict=True) if a])
    hot = np.isclose(lva, 0.141954 * 1.6, rtol=1e-12)
    assert hot.sum() == 29
    assert table.distance[apical][hot].min() == pytest.approx(690.0, abs=0.5)
    assert set(np.round(lva[~hot], 8)) == {round(0.141954 * 1.6 * 0.01, 8)}
    ih = np.array([seg.Ih.gbar for seg, a in zip(segments, apical, strict=True) if a])
    assert ih.max() == pytest.approx(2.10e-3, rel=2e-3)
    assert ih[0] == pytest.approx(1.2625e-4, rel=1e-6)  # the reference's first apical segment
    # the 5b convention: distances from apic[0](0); a section's last segment takes its 1-end
    from simulations._neuron import hoc

    origin = hay_cell.apic[0](0)
    expected = []
    for sec in hay_cell.apic:
        segs = list(sec)
        for i, seg in enumerate(segs):
            where = sec(1.0) if i == len(segs) - 1 else seg
            d = min(hoc().distance(origin, where) / hay_cell.l_max, 0.65)
            expected.append((-0.8696 + 2.087 * np.exp(3.6161 * d)) * 1e-4)
    np.testing.assert_allclose(ih, expected, rtol=1e-12)
    basal = [seg for seg, a in zip(segments, apical, strict=True) if not a]
    assert all(seg.Ih.gbar == 5e-5 for seg in basal)
    assert not any(hasattr(seg, "NaTs2_t") for seg in basal)


def test_resting_potential(hay_cell):
    soma, nexus = ephys.resting_potential(hay_cell)
    assert soma == pytest.approx(-81.0, abs=1.5)
    assert nexus == pytest.approx(-75.8, abs=1.5)


def test_input_resistance(hay_cell):
    assert ephys.input_resistance(hay_cell) == pytest.approx(44.0, abs=5.0)


@pytest.mark.parametrize(("amplitude", "low", "high"), [(0.4, 0, 0), (0.8, 10, 20)])
def test_current_steps(hay_cell, amplitude, low, high):
    spikes = ephys.spikes_during_step(ephys.current_step(hay_cell, amplitude))
    assert low <= len(spikes) <= high
