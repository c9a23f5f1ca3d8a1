"""Keep freed memory in a training process for the next batch (glibc's allocator).

Every training step allocates arrays of megabytes (the batch, activations, gradients) and frees
them a moment later. glibc adapts its thresholds so that such blocks are reused — unless a
``MALLOC_*`` variable fixes them, as dask does for every worker it starts
(``MALLOC_TRIM_THRESHOLD_=65536``, so that long-running workers give memory back). Then each
block goes back to the OS when freed and the next step pays again for fresh zeroed pages: a fit
inside a dask worker (``elmpipe sweep``, ``elmpipe run`` with a sweep, SLURM jobs) ran at a third
to half its speed, the difference spent in the kernel (``python benchmarks/worker_allocator.py``).
Fixing the thresholds high enough for a batch restores the reuse, wherever the process started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: blocks below this come from the heap and are reused (glibc's own ceiling for the adaptive
#: threshold is 32 MiB on 64-bit; a dense batch of 8 windows of the Hay cell's inputs is ≈ 20 MB)
MMAP_THRESHOLD_BYTES = 64 << 20

#: free memory kept at the top of the heap before any is returned to the OS
TRIM_THRESHOLD_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where there is no glibc
    (macOS, Windows, musl) and nothing was changed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0 and changes nothing
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
