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
