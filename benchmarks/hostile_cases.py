"""Replay the hostile run's cases (../shared/docs/bad-input-cases.md) and print what each does now.

    python benchmarks/hostile_cases.py              # a markdown table: id, command, exit, last line
    python benchmarks/hostile_cases.py --keep DIR   # keep the scratch folder (stores, outputs)

Builds what the cases need in a scratch folder — a small simulated store (built-in cell, 2 s
runs, train and test splits of 8), a checkpoint fitted on it, damaged copies made by
../shared/tools/mutate-store.py, configs and CLI arguments — then runs every case as a user
would, in its own process, and reports its exit code and the last line it printed. A case ends
well with exit 0 (a repair that succeeded, or a command that simply works), 2 (bad input, named)
or 3 (environment); a traceback or a signal is a crash.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MUTATE = SHARED / "tools" / "mutate-store.py"
BAD_MORPHOLOGIES = SHARED / "data" / "bad-inputs" / "morphologies"
SIM = ["--duration-ms", "2000", "--input-scale", "1", "--cluster", "in-process", "-q"]

#: store mutations of the list, and the commands each was run with
STORE_CASES = {
    "flip_complete": ("describe", "evaluate", "fit", "export", "simulate"),
    "flip_soma_data": ("evaluate", "simulate"),
    "flip_spike_times": ("evaluate", "simulate"),
    "flip_n_spikes": ("evaluate", "simulate"),
    "del_split_zarrjson": ("describe", "simulate"),
    "no_simulation_attr": ("export",),
    "no_cell_attr": ("export",),
    "no_channels_attr": ("describe", "export"),
    "seed_str": ("export",),
    "nspikes_99": ("describe", "evaluate", "simulate"),
    "nspikes_neg": ("describe", "evaluate"),
    "nspikes_zero": ("describe", "export", "simulate"),
    "soma_nan": ("evaluate", "simulate"),
    "soma_inf": ("evaluate",),
    "shape_meta": ("describe", "evaluate", "fit", "export"),
    "split_json_garbage": ("describe", "evaluate", "fit", "export", "simulate"),
    "channel_sign_meta_shape": ("describe", "fit", "export"),
    "huge_shape": ("describe", "evaluate"),
    "chunk_is_dir": ("simulate",),
    "spc_str": ("simulate",),
    "dtype_meta": ("simulate",),
}


def run(command: list[str], cwd: Path, env: dict | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=900,
        check=False,
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if "Traceback" in done.stderr:
        last = "TRACEBACK: " + last
    return done.returncode, last[:160]


def store_command(kind: str, store: Path, checkpoint: Path, scratch: Path) -> list[str]:
    out = scratch / f"out-{store.parent.name}-{kind}"
    return {
        "describe": ["dataset", "describe", str(store)],
        "evaluate": ["evaluate", "-k", str(checkpoint), "-d", str(store), "--split", "test",
                     "-o", str(out), "--device", "cpu"],
        "fit": ["fit", "-d", str(store), "-o", str(out), "--train-split", "train",
                "--valid-split", "test", "--epochs", "1", "--batches-per-epoch", "3",
                "--num-memory", "2", "--loader-workers", "1", "-q"],
        "export": ["dataset", "export-neuronio", str(store), "--split", "test", "-o", str(out),
                   "--cluster", "in-process", "-q"],
        "simulate": ["simulate", "-o", str(store), "--split", "test", "-n", "8", *SIM],
    }[kind]  # fmt: skip


def cli_cases(scratch: Path, clean: Path, checkpoint: Path) -> list[tuple[str, list[str]]]:
    (scratch / "empty.yaml").write_text("")
    (scratch / "dup.yaml").write_text(f"name: a\nout: {scratch}/dup\nname: b\n")
    (scratch / "celsius.yaml").write_text(
        f"out: {scratch}/celsius\ndata:\n  simulation:\n    celsius: -300\n"
    )
    (scratch / "loopa.zarr").unlink(missing_ok=True)
    (scratch / "loopa.zarr").symlink_to(scratch / "loopa.zarr")
    fit = ["fit", "-d", str(clean), "--train-split", "train", "--valid-split", "test",
           "--epochs", "1", "--batches-per-epoch", "3", "--loader-workers", "1", "-q"]  # fmt: skip
    return [
        ("p09", ["cell", "step", "-a", "nan", "--duration", "10", "--delay", "1"]),
        (
            "p11",
            ["cell", "step", "-a", "0.5", "--duration", "10", "--delay", "1", "--celsius", "-300"],
        ),
        (
            "a09",
            [
                "simulate",
                "-o",
                str(scratch / "a.zarr"),
                "-n",
                "1",
                "--duration-ms",
                "inf",
                "--cluster",
                "in-process",
                "-q",
            ],
        ),
        ("f05", [*fit, "-o", str(scratch / "f05"), "--lr", "inf"]),
        ("f13", [*fit, "-o", str(scratch / "f13"), "--burn-in", "1000000000"]),
        ("f23", [*fit, "-o", str(scratch / "f23"), "--num-memory", "1000000"]),
        ("f24", [*fit, "-o", str(scratch / "f24"), "--export", "/dev/full"]),
        ("f25", [*fit, "-o", str(scratch / "f25"), "--seed", "-5"]),
        ("cfg-empty", ["run", str(scratch / "empty.yaml")]),
        ("cfg-dupkey", ["run", str(scratch / "dup.yaml")]),
        ("cfg-celsius", ["run", str(scratch / "celsius.yaml")]),
        ("d02", ["dataset", "compare", str(clean), str(clean), "--tolerance-ms", "nan"]),
        ("dsp-loopa", ["simulate", "-o", str(scratch / "loopa.zarr"), "-n", "1", *SIM]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="scratch folder to use and keep")
    args = parser.parse_args()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="elmpipe-hostile-"))
    scratch.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, int, str]] = []

    def case(case_id: str, command: list[str], env: dict | None = None) -> None:
        code, last = run(command, scratch, env)
        rows.append((case_id, "elmpipe " + " ".join(command), code, last))
        print(f"| {case_id} | {code} | {last} |", file=sys.stderr, flush=True)

    clean = scratch / "clean" / "data.zarr"
    if not clean.exists():
        for split in ("train", "test"):
            run(["simulate", "-o", str(clean), "--split", split, "-n", "8", *SIM], scratch)
    checkpoint = scratch / "fit" / "best.pt"
    if not checkpoint.exists():
        run(["fit", "-d", str(clean), "-o", str(scratch / "fit"), "--train-split", "train",
             "--valid-split", "test", "--epochs", "1", "--batches-per-epoch", "3",
             "--num-memory", "2", "--loader-workers", "1", "-q"], scratch)  # fmt: skip
    for mutation, commands in STORE_CASES.items():
        for kind in commands:
            store = scratch / "ds" / f"{mutation}-{kind}" / "data.zarr"
            shutil.rmtree(store.parent, ignore_errors=True)
            shutil.copytree(clean, store)
            subprocess.run([sys.executable, MUTATE, store, mutation], check=True)
            case(f"ds-{mutation}-{kind}", store_command(kind, store, checkpoint, scratch))
    for path in sorted(BAD_MORPHOLOGIES.iterdir()):
        case(f"morph-{path.stem}", ["cell", "info", "-m", str(path), "--no-sim"])
    for case_id, command in cli_cases(scratch, clean, checkpoint):
        case(case_id, command)
    blocker = scratch / "FILE"
    blocker.write_text("")
    case("mc02", ["cell", "info", "--no-sim"], {**os.environ, "ELMPIPE_CACHE_DIR": str(blocker)})
    print("| id | command | exit | last line |\n|---|---|---|---|")
    for case_id, command, code, last in rows:
        shown = command.replace(str(scratch), "TMP").replace(str(SHARED), "../shared")
        print(f"| {case_id} | `{shown}` | {code} | {last.replace(str(scratch), 'TMP')} |")
    crashes = sum(
        code not in (0, 2, 3) or last.startswith("TRACEBACK") for _, _, code, last in rows
    )
    print(f"\n{len(rows)} cases, {crashes} crashes")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
