"""Unpickling files from strangers without letting them run code.

Pickle can call any importable function while loading, so a crafted file can run code. The
formats elmpipe reads as pickles — NeuronIO's simulation files, CIFAR-10's python batches — hold
only plain containers and numpy arrays, so :class:`SafeUnpickler` admits exactly the globals those
need and refuses every other one with :class:`UnsafePickleError` before anything runs.
"""

from __future__ import annotations

import pickle
from typing import Any

#: (module, name) pairs such files may reference: numpy arrays, dtypes and scalars, and the two
#: byte-string constructors Python 3 uses for array buffers in protocol-2 pickles —
#: ``_codecs.encode`` for a non-empty buffer, ``bytes()`` (spelled ``__builtin__.bytes``) for an
#: empty one, e.g. a simulation without output spikes
ALLOWED_GLOBALS = frozenset(
    {
        ("_codecs", "encode"),
        ("__builtin__", "bytes"),
        ("builtins", "bytes"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a Python object other than numpy arrays and plain containers."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load {module}.{name}: only numpy arrays and plain containers are "
            "allowed (anything else could run code)"
        )
