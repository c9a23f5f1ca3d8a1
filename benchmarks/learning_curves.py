"""Learning curves on a cell a surrogate never saw: test AUC and soma RMSE against the number of
training simulations, for each way to start.

    python benchmarks/learning_curves.py STORE --test TEST_STORE --out DIR
        [--sims 0,16,32,64,128,256] [--seeds 0,1,2] [--starts scratch,builtin-position,…]
        [--general CHECKPOINT] [--released STATE_DICT --released-cell cell1.asc]
        [--recipe "--num-memory 20 --num-branch 45 …"]

STORE holds the cell's train and valid splits (e.g. ``--adaptive-step`` data), TEST_STORE its fixed
test split (the fine step). Each point is what a lab types: ``elmpipe fit -d STORE --train-sims N
--seed S <start> <recipe>``, then ``elmpipe evaluate -k OUT/best.pt -d TEST_STORE --split test``.
The starts:

- ``scratch``: random weights;
- ``builtin-position`` / ``builtin-geometry``: the shipped surrogate of the built-in cell, synapse
  weights mapped by row position / by place in the cell;
- ``released-geometry``: a released NeuronIO Branch-ELM of the Hay cell (``--released``), by place;
- ``general``: a cell-general Branch-ELM (``--general``, an ``elmpipe pretrain`` checkpoint);
  at N = 0 it is scored as it is (zero-shot: ``elmpipe evaluate -k CHECKPOINT``), the only start
  that can be.

Finished points are kept (fits resume, evaluations are reused), so the script resumes. It prints a
markdown table, one row per start, one column per N: test AUC / soma RMSE (mean ± SD over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

RECIPE = (
    "--num-memory 20 --num-branch 45 --epochs 6 --batches-per-epoch 250 --lr 0.0005 "
    "--select-best loss --loader-workers 1 -q"
)
STARTS = ("scratch", "builtin-position", "builtin-geometry", "released-geometry", "general")


def elmpipe(*args: str) -> None:
    """One elmpipe command, on one PyTorch thread (as a sweep trains): a fit beside running
    simulations on more threads ran 20× slower here (docs/how-much-data.md)."""
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **os.environ}
    subprocess.run([sys.executable, "-m", "pipelines.cli", *args], check=True, env=env)


def start_options(start: str, args: argparse.Namespace) -> list[str] | None:
    """The fit options of a start; None where the script was not given what it needs."""
    if start == "scratch":
        return []
    if start.startswith("builtin-"):
        return ["--init", "builtin", "--init-synapses", f"by-{start.removeprefix('builtin-')}"]
    if start == "released-geometry":
        if args.released is None:
            return None
        cell = ["--init-cell", str(args.released_cell.resolve())] if args.released_cell else []
        return ["--init", str(args.released.resolve()), *cell, "--init-synapses", "by-geometry"]
    if start == "general":
        return None if args.general is None else ["--init", str(args.general.resolve())]
    raise SystemExit(f"unknown start {start!r} (known: {', '.join(STARTS)})")


def evaluated(checkpoint: str, test: Path, out: Path) -> dict:
    metrics = out / "metrics.json"
    if not metrics.exists():
        elmpipe(
            "evaluate", "-k", checkpoint, "-d", str(test), "--split", "test", "-o", str(out),
            "--device", "cpu",
        )  # fmt: skip
    return json.loads(metrics.read_text())


def point(args: argparse.Namespace, start: list[str], n: int, seed: int, out: Path) -> dict:
    """One fit (unless finished) and its evaluation (unless done): the test metrics."""
    if n == 0:  # zero-shot: the start as it is
        return evaluated(start[1], args.test, out / "eval-test")
    if not (out / "result.json").exists():
        resume = ["--resume"] if (out / "last.pt").exists() else []
        elmpipe(
            "fit", "-d", str(args.store), "-o", str(out), "--train-sims", str(n),
            "--seed", str(seed), *start, *shlex.split(args.recipe), *resume,
        )  # fmt: skip
    return evaluated(str(out / "best.pt"), args.test, out / "eval-test")


def cell_text(runs: list[dict]) -> str:
    def one(key: str, digits: int) -> str:
        values = [r[key] for r in runs if r.get(key) is not None]
        if not values:
            return "–"
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    return f"{one('spike_auc', 4)} / {one('soma_rmse_mv', 2)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store", type=Path, help="the cell's train and valid splits")
    parser.add_argument("--test", type=Path, required=True, help="the cell's test split")
    parser.add_argument("--out", type=Path, required=True, help="one folder per start and point")
    parser.add_argument(
        "--sims", default="0,16,32,64,128,256", help="training simulations per point (the first N)"
    )
    parser.add_argument("--seeds", default="0", help="fit seeds of every point, e.g. 0,1,2")
    parser.add_argument(
        "--starts", default=",".join(STARTS), help="of: " + ", ".join(STARTS) + " (comma-separated)"
    )
    parser.add_argument("--general", type=Path, help="a cell-general checkpoint (elmpipe pretrain)")
    parser.add_argument("--released", type=Path, help="a released NeuronIO ELM state dict")
    parser.add_argument("--released-cell", type=Path, help="its cell (cell1.asc)")
    parser.add_argument(
        "--recipe", default=RECIPE, help="fit options of every point (default: %(default)s)"
    )
    args = parser.parse_args()
    sims = [int(n) for n in args.sims.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"cell: {args.store} (test: {args.test}); seeds {args.seeds}; recipe: {args.recipe}")
    print("| start | " + " | ".join(f"{n} sims" for n in sims) + " |")
    print("|---|" + "---|" * len(sims))
    for start in args.starts.split(","):
        options = start_options(start, args)
        if options is None:
            continue
        row = []
        for n in sims:
            if n == 0 and start != "general":
                row.append("–")
                continue
            chosen = seeds[:1] if n == 0 else seeds  # a zero-shot score has no seed
            runs = [point(args, options, n, s, args.out / start / f"n{n}-s{s}") for s in chosen]
            row.append(cell_text(runs))
        print(f"| {start} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
