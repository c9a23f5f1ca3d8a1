"""elmpipe data stage: everything that knows about NEURON.

The public objects are re-exported lazily so that ``import simulations`` stays cheap and does not
start NEURON until a cell is actually built.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Cell": "simulations.cell",
    "SegmentTable": "simulations.cell",
    "ParameterSet": "simulations.biophysics",
    "load_parameter_set": "simulations.biophysics",
    "MorphologyError": "simulations.morphology",
    "default_morphology_path": "simulations.morphology",
    "MechanismBuildError": "simulations.mechanisms",
    "load_mechanisms": "simulations.mechanisms",
    "build_mechanisms": "simulations.mechanisms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'simulations' has no attribute {name!r}")
