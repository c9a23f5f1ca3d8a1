"""How a warm start's synapse mapping matters on a new cell: by geometry, by row position, fresh.

    python benchmarks/transfer_mapping.py STORE [STORE …] --out DIR [--seeds 0,1,2]
        [--released ../shared/data/released-elm/num_memory_20/neuronio_best_model_state.pt
         --released-cell ../shared/data/morphologies/cell1.asc]

For each store (a dataset of some cell with train, valid and test splits, e.g. the demo's
`runs/demo-my_cell/data.zarr`) and seed, it fine-tunes a Branch-ELM (d_m 20, 45 branches) with
the demo's recipe from the shipped surrogate of the built-in cell (``--init builtin``) — and,
with ``--released``, from a released NeuronIO ELM of the Hay cell — once per synapse mapping,
evaluates each on the store's test split with the NeuronIO protocol, and prints the test AUC and
soma RMSE per mapping (mean ± SD over seeds), side by side, with the gain of by-geometry over
by-position. Runs that finished are kept, so the script resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

RECIPE = [
    "--num-memory", "20", "--num-branch", "45", "--epochs", "6", "--batches-per-epoch", "250",
    "--lr", "0.0005", "--select-best", "loss", "--loader-workers", "1", "-q",
]  # fmt: skip
MAPPINGS = ("by-geometry", "by-position", "fresh")


def elmpipe(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipelines.cli", *args], check=True)


def one(store: Path, out: Path, source: list[str], mapping: str, seed: int) -> dict:
    """Fit (unless finished) and evaluate (unless evaluated) one point; its test metrics."""
    if not (out / "result.json").exists():
        resume = ["--resume"] if (out / "last.pt").exists() else []
        elmpipe(
            "fit", "-d", str(store), "-o", str(out), *source, "--init-synapses", mapping,
            "--seed", str(seed), *RECIPE, *resume,
        )  # fmt: skip
    metrics = out / "eval-test" / "metrics.json"
    if not metrics.exists():
        elmpipe(
            "evaluate", "-k", str(out / "best.pt"), "-d", str(store), "--split", "test",
            "-o", str(metrics.parent), "--device", "cpu",
        )  # fmt: skip
    return json.loads(metrics.read_text())


def summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stores", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--released", type=Path)
    parser.add_argument("--released-cell", type=Path)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sources = {"builtin": ["--init", "builtin"]}
    if args.released:
        sources["released"] = ["--init", str(args.released)]
        if args.released_cell:
            sources["released"] += ["--init-cell", str(args.released_cell.resolve())]
    print("| cell | source | mapping | test AUC | soma RMSE (mV) |")
    print("|---|---|---|---|---|")
    for store in args.stores:
        cell = store.parent.name
        for name, source in sources.items():
            means = {}
            for mapping in MAPPINGS:
                runs = [
                    one(store, args.out / cell / name / f"{mapping}-s{seed}", source, mapping, seed)
                    for seed in seeds
                ]
                auc = [m["spike_auc"] for m in runs]
                rmse = [m["soma_rmse_mv"] for m in runs]
                means[mapping] = (statistics.mean(auc), statistics.mean(rmse))
                print(f"| {cell} | {name} | {mapping} | {summary(auc)} | {summary(rmse)} |")
            (g_auc, g_rmse), (p_auc, p_rmse) = means["by-geometry"], means["by-position"]
            print(
                f"| {cell} | {name} | geometry vs position | {g_auc - p_auc:+.4f} | "
                f"{g_rmse - p_rmse:+.3f} (ratio {g_rmse / p_rmse:.3f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
