"""Ideas for a cheaper or truer CoreNEURON step, measured side by side with the shipped build.

    python benchmarks/mechanism_variants.py                  # every variant, 2 rounds (≈ 20 min)
    python benchmarks/mechanism_variants.py rate-tables --rounds 3

Each variant is a copy of the ``simulations`` and ``elmpipe`` packages in a temporary folder
with one change, so it gets its own mechanism build (the build cache is keyed by the mod files
and the compile flags; the first run of a variant compiles it, ≈ 2–3 min):

- ``rate-tables``: every channel whose rates depend on voltage alone (all but SK_E2 and the
  synapses) looks its steady states and time constants up in an NMODL ``TABLE`` (−120…80 mV,
  0.1 mV apart, linear interpolation) instead of computing them with ``exp`` each step — the
  issue's "rate functions by table lookup" candidate;
- ``512-bit-vectors``: the CoreNEURON library compiled with ``-mprefer-vector-width=512`` (gcc
  tunes AVX-512 machines it does not know, such as Zen 4, for 256-bit vectors);
- ``event-lead``: a fidelity variant. Under the second-order fixed step the synapses' states
  stand for half a step later than the step's start, where an event is applied, so every input
  acts half a step late; this variant scales each event's increments by exp(−(dt/2)/τ) of their
  state (dt/2 = 0.00625 ms, the default step's half), which removes that lag.

Every round replays the two reference runs of the original model (``benchmarks/step_size.py``'s
replay, CoreNEURON's default step) once per version, the versions alternating, each in a fresh
process; it prints wall seconds, spikes against the reference's, the largest spike shift and the
clipped soma RMSE of each replay, and each variant's speed-up over the shipped mechanisms from
the median of the rounds.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.step_size import RUNS, SHARED, _child  # noqa: E402
from simulations.simulator import DEFAULT_STEP_MS  # noqa: E402

#: channels whose ``rates(v)`` depend on voltage alone, and the GLOBALs their tables depend on
TABULATED = {
    "Ca_HVA": "",
    "Ca_LVAst": "DEPEND qt, vjunction",
    "Ih": "DEPEND vshift",
    "Im": "DEPEND qt",
    "K_Pst": "DEPEND qt, vjunction",
    "K_Tst": "DEPEND qt, vjunction",
    "NaTa_t": "DEPEND qt",
    "NaTs2_t": "DEPEND qt",
    "Nap_Et2": "DEPEND qt",
    "SKv3_1": "",
}


def _with_rate_tables(packages: Path) -> None:
    mechanisms = packages / "simulations" / "mechanisms"
    for name, depend in TABULATED.items():
        path = mechanisms / f"{name}.mod"
        text = path.read_text()
        head = re.search(r"PROCEDURE rates\(v \(mV\)\) \{\n(\s*LOCAL [^\n]*\n)?", text)
        assert head is not None, f"{name}.mod has no rates(v) procedure"
        body = text[head.end() : text.index("\n}", head.end())]
        outputs = ["mInf", "mTau"] + (["hInf", "hTau"] if "hInf" in body else [])
        table = f"    TABLE {', '.join(outputs)} {depend} FROM -120 TO 80 WITH 2001\n"
        path.write_text(text[: head.end()] + table + text[head.end() :])


def _with_512_bit_vectors(packages: Path) -> None:
    path = packages / "simulations" / "mechanisms.py"
    text = path.read_text()
    flags = 'CORENEURON_FLAGS = "-O3 -march=native -ffast-math'
    assert flags in text, "the CoreNEURON compile flags moved"
    path.write_text(text.replace(flags, flags + " -mprefer-vector-width=512"))


def _with_event_lead(packages: Path) -> None:
    lead = DEFAULT_STEP_MS["coreneuron"] / 2
    mechanisms = packages / "simulations" / "mechanisms"
    increments = {  # state: its time constant, in each synapse's NET_RECEIVE
        "AmpaNmda": {
            "A_AMPA": "tau_r_AMPA",
            "B_AMPA": "tau_d_AMPA",
            "A_NMDA": "tau_r_NMDA",
            "B_NMDA": "tau_d_NMDA",
        },
        "GabaA": {"A": "tau_r", "B": "tau_d"},
    }
    for name, states in increments.items():
        path = mechanisms / f"{name}.mod"
        text = path.read_text()
        receive = text.index("NET_RECEIVE")
        head, tail = text[:receive], text[receive:]
        for state, tau in states.items():
            pattern = rf"(\n\s*{state} = {state} \+ weight\*factor\w*)"
            tail, found = re.subn(pattern, rf"\1*exp(-{lead!r}/{tau})", tail, count=1)
            assert found, f"{name}.mod: no increment of {state}"
        path.write_text(head + tail)


VARIANTS = {
    "rate-tables": _with_rate_tables,
    "512-bit-vectors": _with_512_bit_vectors,
    "event-lead": _with_event_lead,
}


def _copy(variant: str, into: Path) -> Path:
    packages = into / variant
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("simulations", "elmpipe"):
        shutil.copytree(ROOT / package, packages / package, ignore=ignore)
    VARIANTS[variant](packages)
    return packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", help=f"of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=2, help="replays of each version")
    args = parser.parse_args()
    args.variants = args.variants or list(VARIANTS)
    if unknown := sorted(set(args.variants) - set(VARIANTS)):
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if not (SHARED / "reference" / RUNS[0]).exists():
        sys.exit(f"the reference runs are not in {SHARED / 'reference'}")
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"shipped": ROOT} | {v: _copy(v, Path(tmp)) for v in args.variants}
        walls: dict[str, list[float]] = {name: [] for name in versions}
        print(f"{'round':>5} {'version':<16} {'wall s':>7}  per replay: spikes, max shift, RMSE")
        for round_ in range(args.rounds):
            for name, packages in versions.items():
                rows = _child(DEFAULT_STEP_MS["coreneuron"], "coreneuron", packages)
                walls[name].append(sum(row["wall"] for row in rows))
                detail = "; ".join(
                    f"{row['spikes']}/{row['reference_spikes']} spikes, "
                    f"{max((abs(s) for s in row['signed_shifts']), default=0.0):.3f} ms, "
                    f"{row['clipped_rmse']:.3f} mV"
                    for row in rows
                )
                print(f"{round_:>5} {name:<16} {walls[name][-1]:>7.1f}  {detail}", flush=True)
    shipped = float(np.median(walls["shipped"]))
    for name in args.variants:
        print(f"{name}: ×{shipped / float(np.median(walls[name])):.2f} against the shipped build")


if __name__ == "__main__":
    main()
