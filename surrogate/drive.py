"""How hard a dataset drives its cell: the mean excitatory input rate per channel.

elmpipe calibrates every cell's input scale until it fires like the Hay cell under NeuronIO's
inputs (docs/own-cell.md), so the drive a cell needed says how far one input spike moves it:
Hay's cell3 needs 2.8 times the Hay cell's spikes per channel, each moving its larger membrane
less. A surrogate's synapse weights carry exactly that, and no geometric feature of a segment
tells it; so the cell-general model scales the weights it computes by the reference drive over
the cell's (``weight_scale`` in surrogate/models/general_elm.py), measured here on the inputs —
which a zero-shot evaluation has too. Without it, a general model pretrained on three cells
scored cell3 zero-shot at AUC 0.919; with it, 0.977 (docs/how-much-data.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from elmpipe.dataset import SKIP_MS, Dataset
from elmpipe.errors import DatasetError

#: simulations read to measure a drive: the rate varies a few per cent between simulations
DRIVE_SIMULATIONS = 8


def input_rate_hz(store: str | Path, split: str, max_sims: int = DRIVE_SIMULATIONS) -> float:
    """Mean excitatory input rate per channel (Hz) over the first complete simulations of
    ``split``, after the first 500 ms (the protocol's fade-in)."""
    part = Dataset(store).split(split)
    sims = part.require_intact()[:max_sims]
    if sims.size == 0:
        raise DatasetError(f"{part}: no complete simulation to measure the input rate on")
    excitatory = np.flatnonzero(part.channel_sign > 0)
    start = SKIP_MS if part.n_time > 2 * SKIP_MS else 0
    spikes = 0
    for sim in sims:  # one at a time: a 6 s simulation of a large cell is ~10 MB of inputs
        spikes += int(part.read("inputs", np.array([sim]))[0, start:, excitatory].sum())
    seconds = sims.size * (part.n_time - start) / 1000.0
    return spikes / (seconds * excitatory.size)
