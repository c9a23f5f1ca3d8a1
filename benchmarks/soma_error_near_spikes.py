"""Where a surrogate's soma error lies: its share within a window around the output spikes.

    python benchmarks/soma_error_near_spikes.py CHECKPOINT TEST_STORE [--split test]

Pools the test split exactly as `elmpipe evaluate` does (kept simulations, per-file rescaling,
the first 500 ms dropped), then prints, for windows from 5 ms before to 10, 20 and 50 ms after
each output spike, the share of the time they cover, their share of the squared soma error and
the RMSE outside them — the numbers docs/how-much-data.md quotes for the soma RMSE target.
"""

from __future__ import annotations

import argparse

import numpy as np

from elmpipe.dataset import Dataset
from surrogate.checkpoints import load_model
from surrogate.evaluate import EvaluationConfig, _pooled

BEFORE_MS = 5


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("store")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    model = load_model(args.checkpoint).eval()
    dataset = Dataset(args.store)
    data = dataset.split(args.split)
    complete = data.require_intact()
    n_spikes = np.full(data.n_sims, -1, dtype=np.int64)
    n_spikes[complete] = data.spike_counts(complete)
    pooled, _, _ = _pooled(model, dataset, data, n_spikes, EvaluationConfig(), "cpu")
    squared = (pooled.truth - pooled.prediction) ** 2
    print(f"soma RMSE {np.sqrt(squared.mean()):.3f} mV over {pooled.labels.sum()} output spikes")
    for after in (10, 20, 50):
        near = np.zeros(squared.shape, dtype=bool)
        for sim, t in zip(*np.nonzero(pooled.labels), strict=True):
            near[sim, max(t - BEFORE_MS, 0) : t + after] = True
        print(
            f"-{BEFORE_MS}…+{after} ms of output spikes: {100 * near.mean():.1f} % of the time, "
            f"{100 * squared[near].sum() / squared.sum():.1f} % of the squared error; "
            f"RMSE elsewhere {np.sqrt(squared[~near].mean()):.3f} mV"
        )


if __name__ == "__main__":
    main()
