"""Shared fixtures. Cells are built once per session: NEURON keeps one global model per process."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
HAY_MORPHOLOGY = SHARED / "data" / "morphologies" / "cell1.asc"


@pytest.fixture(scope="session")
def hay_path() -> Path:
    if not HAY_MORPHOLOGY.exists():
        pytest.skip(f"Hay reconstruction not available at {HAY_MORPHOLOGY} (../shared is absent)")
    return HAY_MORPHOLOGY


@pytest.fixture(scope="session")
def hay_cell(hay_path):
    from simulations.cell import Cell

    return Cell(hay_path)


@pytest.fixture(scope="session")
def default_cell():
    from simulations.cell import Cell

    return Cell()


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory):
    """A small dataset of a toy neuron (tests/toy_dataset.py): train 24, valid 8 simulations."""
    from tests.toy_dataset import make_toy_dataset

    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "toy.zarr", {"train": 24, "valid": 8})
