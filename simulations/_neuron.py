"""The one place that imports NEURON, so that its process-wide set-up happens exactly once."""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from typing import Any


@cache
def neuron_module() -> Any:
    """The ``neuron`` package, imported headless.

    ``-nogui`` keeps NEURON from probing for an X display (and warning about it) on headless
    machines, which is every machine this pipeline runs on.
    """
    os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")
    import neuron

    return neuron


@cache
def hoc() -> Any:
    """Return NEURON's ``h`` with the standard run system and Import3d loaded."""
    h = neuron_module().h
    h.load_file("stdrun.hoc")
    h.load_file("import3d.hoc")
    return h


def coreneuron() -> Any:
    """NEURON's switchboard for handing runs to CoreNEURON (``enable``, ``verbose``)."""
    from neuron import coreneuron as switchboard

    return switchboard


def _flush_c_stdio() -> None:
    """Flush the C library's stdio buffers: NEURON prints with printf, not through Python."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def captured_c_output() -> Iterator[list[str]]:
    """Capture what NEURON prints while the block runs.

    Import3d reports parse problems by printing them rather than raising; capturing them lets us
    turn those messages into a proper error. NEURON prints through Python's ``sys.stdout`` when it
    runs inside Python, and through the C library otherwise, so both are captured. The captured
    text is appended to the yielded list when the block exits.
    """
    sink: list[str] = []
    python_text = io.StringIO()
    _flush_c_stdio()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with contextlib.redirect_stdout(python_text), contextlib.redirect_stderr(python_text):
                yield sink
        finally:
            _flush_c_stdio()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            sink.append(python_text.getvalue() + tmp.read().decode(errors="replace"))
