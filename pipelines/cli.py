"""The ``elmpipe`` command line.

Exit codes: 0 success; 1 unexpected failure (a bug: please report it); 2 bad input or usage (a
missing or broken file, an invalid option or config); 3 the environment cannot run the step (no
C++ compiler, NEURON cannot build or load the mechanisms).
"""

from __future__ import annotations

import signal
from typing import Any

import click

from pipelines.commands.cell import cell
from pipelines.commands.common import EPILOG, EXIT_BAD_INPUT, EXIT_ENVIRONMENT
from pipelines.commands.data import dataset, simulate
from pipelines.commands.evaluate import evaluate
from pipelines.commands.fit import fit, sweep
from pipelines.commands.mechanisms import mechanisms
from pipelines.commands.run import run
from pipelines.commands.tasks import task

__all__ = ["EXIT_BAD_INPUT", "EXIT_ENVIRONMENT", "cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(package_name="elmpipe")
def cli() -> None:
    """elmpipe: turn a detailed neuron model into a small, fast, accurate learned surrogate.

    \b
    Stages:  simulate (NEURON → Zarr dataset) → fit (ELM, TCN, LSTM) → evaluate → report.
      elmpipe run configs/demo.yaml          all stages on the built-in cell, with a report
      elmpipe cell check -m my_cell.asc      your reconstruction: rest, Rin, firing, Ca, NMDA
      elmpipe simulate -o data.zarr -n 64    NeuronIO-protocol simulations, one per core
      elmpipe fit -d data.zarr -o runs/elm   a Branch-ELM (d_m 20) with the released recipe
      elmpipe evaluate -k runs/elm/best.pt -d data.zarr --split test
    Every command has --help; `elmpipe COMMAND --help` shows examples.
    """


for command in (cell, simulate, dataset, fit, sweep, evaluate, run, task, mechanisms):
    cli.add_command(command)


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    # a batch system's or a user's `kill` then shuts local worker processes down cleanly, as
    # Ctrl-C does, instead of leaving them running as orphans
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    cli(prog_name="elmpipe")


if __name__ == "__main__":
    main()
