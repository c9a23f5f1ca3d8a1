"""Tolerances that follow float32's precision, so a test passes on any common CPU.

Why: float32 results differ between CPUs in their last bits (vector widths and library kernels
sum in different orders: a released checkpoint's outputs were 4.4e-5 relative off its float64
reference on an Intel Xeon, within 2e-4 absolute on an AMD EPYC). An error bound in units of
float32's machine epsilon relative to the result's scale holds on both, and still fails on any
mistake in the equations, whose errors are of the order of the values themselves.
"""

from __future__ import annotations

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)


def assert_float32_close(actual, expected, *, eps_units: float) -> None:
    """``actual`` (computed in float32) within ``eps_units`` float32 epsilons of ``expected``,
    relative to the largest magnitude in ``expected`` (sums and recurrences spread rounding
    errors over every element, so the scale of the whole result bounds each one's error)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(float(np.abs(expected).max()), 1.0)
    bound = eps_units * FLOAT32_EPS * scale
    worst = float(np.abs(actual - expected).max())
    assert worst <= bound, f"largest difference {worst:.3g} > {eps_units} eps × {scale:.3g}"
