"""What every elmpipe command shares: exit codes, error mapping, common options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3

EPILOG = (
    "Exit codes: 0 ok · 1 unexpected failure · 2 bad input or usage · "
    "3 environment problem (compiler, NEURON build)."
)


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT


class EnvironmentProblem(click.ClickException):
    exit_code = EXIT_ENVIRONMENT


def translate(exc: Exception) -> click.ClickException:
    """Map the stages' own errors onto exit codes with a one-line message."""
    from simulations.biophysics import ParameterSetError
    from simulations.mechanisms import MechanismBuildError
    from simulations.morphology import MorphologyError

    if isinstance(exc, MechanismBuildError):
        return EnvironmentProblem(str(exc))
    if isinstance(exc, MorphologyError | ParameterSetError | FileNotFoundError | ValueError):
        return BadInput(str(exc))
    raise exc


def build_cell(morphology: Path | None, parameters: str | None, nexus: str | None = None) -> Any:
    from simulations.cell import Cell

    try:
        return Cell(morphology, parameters, nexus=nexus)
    except Exception as exc:
        raise translate(exc) from exc


morphology_option = click.option(
    "--morphology",
    "-m",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Reconstruction to use (Neurolucida .asc or .swc). Default: the built-in cell.",
)
parameters_option = click.option(
    "--parameters",
    "-p",
    default=None,
    metavar="NAME|FILE",
    help="Biophysical parameter set: a bundled name (hay-5b) or a YAML file. Default: hay-5b.",
)
nexus_option = click.option(
    "--nexus",
    default=None,
    metavar="SITE",
    help="Nexus recording site such as 'apic[50](0.9)'. Default: found on the main apical path.",
)


def with_options(options):
    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


cluster_options = [
    click.option(
        "--cluster",
        type=click.Choice(["in-process", "local", "address", "slurm", "pbs"]),
        help="Where tasks run (default: local, one worker process per core).",
    ),
    click.option("--workers", type=int, help="Worker processes (local) or jobs (slurm/pbs)."),
    click.option("--address", help="Scheduler address for --cluster address."),
]
