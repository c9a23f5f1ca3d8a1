"""What every elmpipe command shares: the help epilog, common options, the cell builder.

Commands raise elmpipe's own errors (elmpipe.errors); ``pipelines.cli`` maps them to exit codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from elmpipe.errors import EXIT_CODES_HELP, InputError

EPILOG = EXIT_CODES_HELP


class FiniteRange(click.FloatRange):
    """A float range that also refuses nan (click's range lets it through: every comparison
    with nan is false), which NEURON then met as an integrator error with a traceback."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


def build_cell(morphology: Path | None, parameters: str | None, nexus: str | None = None) -> Any:
    """The cell of a command's options (``--apical-trees`` included, see :func:`apical_trees`)."""
    from simulations.cell import Cell

    return Cell(morphology, parameters, nexus=nexus, apical_trees=apical_trees())


def comma_separated(text: str | None, kind: type = int, option: str = "option") -> tuple | None:
    """'1,2,5' → (1, 2, 5); None stays None."""
    if text is None:
        return None
    try:
        return tuple(kind(v.strip()) for v in text.split(","))
    except ValueError:
        raise InputError(
            f"{option}: expected comma-separated {kind.__name__}s, got {text!r}"
        ) from None


_morphology = click.option(
    "--morphology",
    "-m",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Reconstruction to use (Neurolucida .asc, .swc or Blue Brain .h5 v1/v2). Default: the "
    "built-in cell.",
)

_APICAL_TREES = "elmpipe.apical_trees"


def _remember_apical_trees(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    trees = comma_separated(value, int, "--apical-trees")
    ctx.meta[_APICAL_TREES] = None if trees is None else list(trees)


_apical_trees = click.option(
    "--apical-trees",
    default=None,
    metavar="K[,K…]",
    expose_value=False,
    callback=_remember_apical_trees,
    help="The dendrite trees (numbered 0, 1, … in file order) that are apical, for a file whose "
    "tags do not say; every other dendrite tree is then basal. Default: the file's tags.",
)


def apical_trees() -> list[int] | None:
    """``--apical-trees`` of the running command (None: not given, or no command running).

    The option travels with ``--morphology`` and is read here rather than passed as an argument,
    so that every command taking a morphology takes it too; commands that build a config put it
    under ``cell.apical_trees``."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(_APICAL_TREES)


def morphology_option(command):
    """``--morphology/-m`` and ``--apical-trees``."""
    return _morphology(_apical_trees(command))


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
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
data_option = click.option(
    "--data", "-d", required=True, type=click.Path(path_type=Path), help="Zarr dataset."
)


def out_option(help: str, required: bool = True):
    """``--out/-o``: where the command writes (checked before any work starts)."""
    return click.option(
        "--out", "-o", required=required, type=click.Path(path_type=Path), help=help
    )


def config_option(help: str):
    """``--config/-c``: a YAML file, read by the one config loader."""
    return click.option(
        "--config", "-c", "config_path", type=click.Path(path_type=Path, dir_okay=False), help=help
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


def _input_scale(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a number, got {value!r}") from None


input_scale_option = click.option(
    "--input-scale",
    default=None,
    metavar="auto|NUMBER",
    callback=_input_scale,
    help="× the NeuronIO protocol's input counts. 'auto' (the default): calibrated so that the "
    "cell fires as the Hay cell does (kept by an existing store; the Hay cell gets exactly 1, "
    "NeuronIO's protocol); a number: used as given. See docs/own-cell.md.",
)
