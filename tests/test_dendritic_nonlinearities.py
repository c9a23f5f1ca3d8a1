"""Both cells show the dendritic nonlinearities an L5PC surrogate has to learn."""

from __future__ import annotations

import pytest

from simulations import electrophysiology as ephys


@pytest.fixture(params=["default", "hay"])
def cell(request):
    return request.getfixturevalue(f"{request.param}_cell")


def test_calcium_spike_in_hot_zone(cell):
    intact = ephys.calcium_response(cell)
    blocked = ephys.calcium_response(cell, block_calcium=True)
    assert intact.plateau_ms > 10.0
    assert blocked.plateau_ms < 2.0
    assert intact.peak_ica < -0.1
    assert blocked.peak_ica == 0.0


def test_nmda_supralinearity(cell):
    site = ephys.distal_basal_location(cell)
    single = ephys.nmda_nonlinearity(cell, site, 1)
    many = ephys.nmda_nonlinearity(cell, site, 40)
    assert single.nmda_per_event > 0
    assert many.nmda_per_event > 2.0 * single.nmda_per_event
    # AMPA alone sums sublinearly (driving force shrinks): the gain comes from NMDA
    assert many.ampa_only_mv_ms < 40 * single.ampa_only_mv_ms
