"""Data-stage benchmark: speed against a straightforward NEURON script, statistics against the
documented NeuronIO reference, and bytes on disk against the NeuronIO pickle format.

    python benchmarks/simulation.py                       # everything (≈20 min on 2 cores)
    python benchmarks/simulation.py --seconds 1 --stats-sims 0   # speed only, quicker

Every timing runs in its own fresh process (NEURON holds one model per process), one after the
other, and the ratios are computed from measurements taken side by side in this one run.

1. Speed, for the Hay cell (../shared) and the built-in cell: wall seconds per simulated second
   of a straightforward NEURON script (CVode, every dendritic segment recorded at every step,
   one ``NetCon.event`` per input spike queued from Python) and of our data stage
   (`simulations.simulator.Simulator`) with each engine — neuron-cvode (the reference run),
   neuron-fixed, coreneuron, and coreneuron with the adaptive step — on identical inputs;
   speed-ups against the CVode reference, spike time differences and soma RMSE (clipped at
   -55 mV) against it; then the aggregate throughput of the default engine with 1 and 2
   simulations running at once (one per worker process).
2. End-to-end throughput of `elmpipe simulate` (8 × 6 s Hay simulations on 2 workers, start-up
   and storing included), with the default settings (a new store's 0.025 ms step), with the
   replay-grade ``--dt-ms 0.0125`` and with ``--adaptive-step``, as simulated
   seconds per wall second, its ratio to the CVode reference's per-core rate from part 1, and
   the peak memory per worker; then the statistics of the default run's simulations next to the
   documented reference values.
3. Bytes per simulated second of those simulations in our Zarr store and as NeuronIO pickles.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HAY = ROOT.parent / "shared" / "data" / "morphologies" / "cell1.asc"
sys.path.insert(0, str(ROOT))


# -- the two versions, each run in a child process --------------------------------------------


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _inputs(cell, seconds: float, seed: int) -> np.ndarray:
    from simulations.inputs import InputLayout, NeuronIOProtocol, generate_inputs, simulation_rng

    layout = InputLayout.from_segment_table(cell.segments)
    rng = simulation_rng(seed, "benchmark", 0)
    return generate_inputs(NeuronIOProtocol(input_scale=1.0), layout, seconds * 1000, rng).spikes


def run_ours(morphology: str | None, seconds: float, seed: int, out: str, engine: str) -> dict:
    from simulations.cell import Cell
    from simulations.simulator import AdaptiveStep, SimulationSettings, Simulator

    cell = Cell(morphology)
    inputs = _inputs(cell, seconds, seed)
    adaptive = AdaptiveStep() if engine.endswith("-adaptive") else None
    settings = SimulationSettings(
        duration_ms=seconds * 1000, engine=engine.removesuffix("-adaptive"), adaptive=adaptive
    )
    simulator = Simulator(cell, settings)  # builds CoreNEURON mechanisms if not cached yet
    started = time.perf_counter()
    result = simulator.run_binary(inputs)
    wall = time.perf_counter() - started
    np.save(out, result.soma_v)
    return {
        "wall": wall,
        "spikes": result.spike_times.tolist(),
        "events": int(inputs.sum()),
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_straightforward(
    morphology: str | None, seconds: float, seed: int, out: str, engine: str = ""
) -> dict:
    """The same simulation written the obvious way."""
    from elmpipe.dataset import detect_spikes
    from simulations._neuron import hoc
    from simulations.cell import Cell

    h = hoc()
    cell = Cell(morphology)
    inputs = _inputs(cell, seconds, seed)
    started = time.perf_counter()
    segments = cell.dendritic_segments()
    synapses = [h.AmpaNmda(seg) for seg in segments] + [h.GabaA(seg) for seg in segments]
    netcons = []
    for syn in synapses:
        con = h.NetCon(None, syn)
        con.weight[0], con.delay = 1.0, 0.0
        netcons.append(con)
    trains = [np.flatnonzero(inputs[:, c]).astype(float) for c in range(inputs.shape[1])]

    def queue_events() -> None:
        for con, train in zip(netcons, trains, strict=True):
            for t in train:
                con.event(t)

    handler = h.FInitializeHandler(queue_events)
    t_vec = h.Vector().record(h._ref_t)
    soma = h.Vector().record(cell.soma[0](0.5)._ref_v)
    dendrites = [h.Vector().record(seg._ref_v) for seg in segments]
    h.celsius = 6.3
    h.cvode_active(1)
    h.CVode().atol(1e-3)
    h.finitialize(-76.0)
    h.continuerun(seconds * 1000)
    t = np.array(t_vec)
    t_high = np.arange(int(seconds * 8000)) / 8.0
    t_low = np.arange(int(seconds * 1000), dtype=float)
    soma_high = np.interp(t_high, t, np.array(soma))
    spikes = detect_spikes(t_high, soma_high, -25.0)
    soma_low = np.interp(t_low, t, np.array(soma)).astype(np.float32)
    dend_low = np.stack([np.interp(t_low, t, np.array(v)) for v in dendrites]).astype(np.float16)
    wall = time.perf_counter() - started
    del handler
    np.save(out, soma_low)
    return {
        "wall": wall,
        "spikes": spikes.tolist(),
        "steps": len(t),
        "dend_shape": dend_low.shape,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _start(version: str, morphology: str | None, seconds: float, seed: int, out: str):
    function, _, engine = version.partition(":")
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); "
        f"from benchmarks.simulation import run_{function} as f; "
        f"print(json.dumps(f({morphology!r}, {seconds!r}, {seed!r}, {out!r}, {engine!r})))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(version: str, process) -> dict:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{version} failed:\n{stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def _child(version: str, morphology: str | None, seconds: float, seed: int, out: str) -> dict:
    return _finish(version, _start(version, morphology, seconds, seed, out))


VERSIONS = (
    "straightforward",
    "ours:neuron-cvode",
    "ours:neuron-fixed",
    "ours:coreneuron",
    "ours:coreneuron-adaptive",
)
REFERENCE_VERSION = "ours:neuron-cvode"


def _compare(reference: dict, result: dict, ref_v: np.ndarray, v: np.ndarray) -> str:
    a, b = np.array(reference["spikes"]), np.array(result["spikes"])
    rmse = float(np.sqrt(np.mean((np.minimum(ref_v, -55) - np.minimum(v, -55)) ** 2)))
    if len(a) != len(b):
        spikes = f"spikes {len(b)} vs {len(a)} (DIFFERENT COUNT)"
    else:
        shift = np.abs(a - b).max() if len(a) else 0.0
        spikes = f"{len(b)} spikes, max shift {shift:.3f} ms"
    return f"{spikes}, clipped RMSE {rmse:.3f} mV"


def scaling(morphology: str | None, seconds: float, seed: int, workers: int, tmp: str) -> None:
    """Aggregate throughput of the default engine, 1 and then ``workers`` processes at once."""
    version = "ours:coreneuron"
    rates = {}
    for n in (1, workers):
        started = time.perf_counter()
        procs = [
            _start(version, morphology, seconds, seed + i, os.path.join(tmp, f"s{n}-{i}.npy"))
            for i in range(n)
        ]
        results = [_finish(version, p) for p in procs]
        elapsed = time.perf_counter() - started  # incl. process start and cell building
        sim_walls = [r["wall"] for r in results]
        rates[n] = n * seconds / max(sim_walls)
        print(
            f"{n} worker(s): {n * seconds:g} simulated s; simulation walls "
            + "/".join(f"{w:.1f}" for w in sim_walls)
            + f" s → {rates[n]:.2f} simulated s per wall s (whole processes: {elapsed:.1f} s)"
        )
    print(f"scaling 1 → {workers} workers: ×{rates[workers] / rates[1]:.2f}")


def speed(cells: dict[str, str | None], seconds: float, seed: int, repeats: int) -> dict:
    """Prints the side-by-side table; returns each cell's best wall s per simulated s by
    version (the end-to-end section compares with the reference's per-core rate)."""
    print(f"\n== 1. Speed: {seconds:g} s simulated, NeuronIO inputs (seed {seed})")
    print(_build_times())
    header = f"{'cell':<8} {'version':<28} {'wall s/sim s':>13} {'speed-up':>9} {'peak MB':>8}"
    print(header + "  against neuron-cvode")
    rates: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, morphology in cells.items():
            walls: dict[str, list[float]] = {v: [] for v in VERSIONS}
            results = {}
            for _ in range(repeats):  # alternate, so drifts of a shared machine hit all
                for version in VERSIONS:
                    out = os.path.join(tmp, f"{name}-{version}.npy")
                    results[version] = _child(version, morphology, seconds, seed, out)
                    walls[version].append(results[version]["wall"] / seconds)
            best = {v: min(w) for v, w in walls.items()}
            rates[name] = best
            ref_v = np.load(os.path.join(tmp, f"{name}-{REFERENCE_VERSION}.npy"))
            for version in VERSIONS:
                v = np.load(os.path.join(tmp, f"{name}-{version}.npy"))
                label = version.replace("ours:", "elmpipe ")
                print(
                    f"{name:<8} {label:<28} {best[version]:>13.2f} "
                    f"{best[REFERENCE_VERSION] / best[version]:>9.2f} "
                    f"{results[version]['peak_rss_mb']:>8.0f}  "
                    + _compare(results[REFERENCE_VERSION], results[version], ref_v, v)
                )
            if repeats > 1:
                listed = (f"{v} " + "/".join(f"{w:.2f}" for w in ws) for v, ws in walls.items())
                print(f"{'':<8} all walls (s/s): " + "; ".join(listed))
            print(f"{'':<8} ({results[REFERENCE_VERSION]['events']} input events)")
        name, morphology = next(iter(cells.items()))
        print(f"\n-- throughput of the default engine (coreneuron), {name} cell")
        scaling(morphology, seconds, seed, 2, tmp)
    return rates


def _build_times() -> str:
    from simulations.mechanisms import build_info

    parts = []
    for variant in ("neuron", "coreneuron"):
        try:
            info = build_info(variant=variant)
            parts.append(f"{variant} {info['build_seconds']:.0f} s")
        except OSError:
            parts.append(f"{variant} not built yet")
    return "one-time mechanism builds (from the cache manifests): " + ", ".join(parts)


# -- statistics and bytes ------------------------------------------------------------------------


REFERENCE = {
    "excitatory input (Hz per synapse)": 12.2,
    "inhibitory input (Hz per synapse)": 9.6,
    "soma V mean after 500 ms (mV)": "≈ -67 (-65 to -67.5)",
    "output spikes per 6 s simulation": "0 to 22",
}


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def statistics_and_bytes(
    n_sims: int, workers: int, seed: int, cvode_wall_per_sim_s: float | None = None
) -> None:
    """End-to-end throughput of `elmpipe simulate` (start-up and storing included) against the
    reference's per-core rate, then the statistics and the bytes of what it made."""
    from elmpipe.dataset import Dataset
    from elmpipe.dataset.statistics import describe
    from pipelines.cluster import ClusterConfig
    from pipelines.config import SimulateConfig
    from pipelines.neuronio_files import export_neuronio
    from pipelines.simulation_stage import simulate
    from simulations.cell import CellSpec
    from simulations.simulator import AdaptiveStep, SimulationSettings

    print(
        f"\n== 2. Statistics of {n_sims} Hay-cell simulations of 6 s (elmpipe simulate, "
        f"{workers} workers)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for stepping, store_name, settings in (
            ("default settings (0.025 ms)", "hay.zarr", SimulationSettings()),
            ("--dt-ms 0.0125", "hay-fine.zarr", SimulationSettings(dt_ms=0.0125)),
            ("--adaptive-step", "hay-adaptive.zarr", SimulationSettings(adaptive=AdaptiveStep())),
        ):
            store = Path(tmp) / store_name
            config = SimulateConfig(
                cell=CellSpec(morphology=str(HAY)),
                seed=seed,
                simulation=settings,
                cluster=ClusterConfig(kind="local", workers=workers),
            )
            summary = simulate(config, store, "test", n_sims, progress=False)
            core_seconds = summary.seconds * workers
            throughput = 6 * n_sims / summary.seconds
            print(
                f"{stepping}: wall {summary.seconds:.0f} s for {n_sims} × 6 s on {workers} "
                f"workers, incl. start-up and storing: {throughput:.3f} simulated s per wall s "
                f"(≈ {core_seconds / (6 * n_sims):.1f} core-s per simulated s); peak memory per "
                f"worker {summary.peak_worker_rss_mb:.0f} MB"
            )
            if cvode_wall_per_sim_s:
                print(
                    f"  against the CVode reference's per-core rate "
                    f"({1 / cvode_wall_per_sim_s:.4f} simulated s per wall s, measured above): "
                    f"×{throughput * cvode_wall_per_sim_s:.1f} aggregate on {workers} cores"
                )
        store = Path(tmp) / "hay.zarr"  # the statistics and bytes: the default settings' run
        split = describe(str(store))["splits"]["test"]
        counts = Dataset(store).split("test").spike_counts().tolist()
        soma = split["soma_v_mv"]
        ours = {
            "excitatory input (Hz per synapse)": f"{split['input_rate_hz']['excitatory']:.2f}",
            "inhibitory input (Hz per synapse)": f"{split['input_rate_hz']['inhibitory']:.2f}",
            "soma V mean after 500 ms (mV)": f"{soma['mean']:.2f} ± {soma['sd']:.2f}",
            "output spikes per 6 s simulation": f"mean {split['output']['spikes_per_sim_mean']:.1f}"
            f" (per sim: {', '.join(str(n) for n in counts)})",
        }
        print(f"{'quantity':<36} {'ours':<32} documented")
        for key, value in REFERENCE.items():
            print(f"{key:<36} {ours[key]:<32} {value}")

        print("\n== 3. Bytes per simulated second")
        folder = Path(tmp) / "pickles"
        export_neuronio(
            store, "test", folder, cluster=ClusterConfig(kind="in-process"), progress=False
        )
        simulated = 6.0 * n_sims
        zarr_bytes = _bytes(store) / simulated
        pickle_bytes = _bytes(folder) / simulated
        dvt_bytes = 639 * 6000 * 2 / 6.0  # float16 dendritic traces NeuronIO files also carry
        print(f"our Zarr store (inputs, soma, nexus, spikes):  {zarr_bytes / 1e3:9.1f} kB/s")
        print(
            f"NeuronIO pickle, same content (no DVTs):       {pickle_bytes / 1e3:9.1f} kB/s "
            f"→ ours is 1/{pickle_bytes / zarr_bytes:.1f}"
        )
        print(
            f"NeuronIO pickle as published (with DVTs):      "
            f"{(pickle_bytes + dvt_bytes) / 1e3:9.1f} kB/s → ours is "
            f"1/{(pickle_bytes + dvt_bytes) / zarr_bytes:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="simulated seconds per timing")
    parser.add_argument("--repeats", type=int, default=1, help="timings per version (best kept)")
    parser.add_argument("--stats-sims", type=int, default=8, help="6 s Hay simulations (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    cells: dict[str, str | None] = {"default": None}
    if HAY.exists():
        cells = {"hay": str(HAY), **cells}
    else:
        print(f"(Hay reconstruction not found at {HAY}: timing the built-in cell only)")
    rates = speed(cells, args.seconds, args.seed, args.repeats)
    if args.stats_sims > 0 and HAY.exists():
        cvode = rates.get("hay", {}).get(REFERENCE_VERSION)
        statistics_and_bytes(args.stats_sims, args.workers, args.seed, cvode)


if __name__ == "__main__":
    main()
