"""Training keeps freed batch memory for the next batch, even in a dask worker's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# allocate, fill and free a 20 MB array (a batch's worth) 20 times; count the page faults
PROBE = """
import json, resource, sys
import numpy as np
sys.path.insert(0, {root!r})
kept = False
if {fix}:
    from surrogate.allocator import keep_freed_memory
    kept = keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(20 << 20, np.uint8); del a
before = faults()
for _ in range(20):
    a = np.ones(20 << 20, np.uint8); del a
print(json.dumps({{"kept": kept, "faults": (faults() - before) / 20}}))
"""


def probe(fix: bool) -> dict:
    # what dask's nanny sets for every worker it starts (distributed.nanny.pre-spawn-environ)
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    code = PROBE.format(root=str(ROOT), fix=fix)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_batches_are_reused_instead_of_faulted_in_again():
    untouched, kept = probe(fix=False), probe(fix=True)
    assert kept["kept"] is True
    # a 20 MB block handed back to the OS costs hundreds of page faults when it comes back
    assert kept["faults"] <= max(5.0, untouched["faults"] / 20), (untouched, kept)
