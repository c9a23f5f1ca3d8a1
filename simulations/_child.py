"""A throw-away Python process that runs one of this package's functions.

Loading a lab's files into NEURON (a morphology through Import3d, a cell template) can stop the
hoc interpreter or crash its process; doing it first in a child process keeps the caller's NEURON
usable and turns whatever happened into a message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_in_child(
    module: str, function: str, argument: str, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """``module.function(argument)`` in a fresh interpreter with this package importable; the
    completed process (its output captured). Raises ``subprocess.TimeoutExpired``."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    code = f"import sys; from {module} import {function}; {function}(sys.argv[1])"
    return subprocess.run(
        [sys.executable, "-c", code, argument],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )
