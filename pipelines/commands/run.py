"""elmpipe run: the whole pipeline from a config."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.commands.common import (
    EPILOG,
    BadInput,
    morphology_option,
    translate,
)

# -- run ------------------------------------------------------------------------------------


@click.command(epilog=EPILOG)
@click.argument(
    "config_path", metavar="CONFIG.yaml", type=click.Path(path_type=Path, dir_okay=False)
)
@morphology_option
@click.option("--out", "-o", help="Run folder (overrides the config's `out`).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(config_path: Path, morphology: Path | None, out: str | None, quiet: bool) -> None:
    """Run the whole pipeline: simulate → describe → fit (or sweep) → evaluate → report.

    \b
    Every stage is skipped when its output is complete and resumed when it was interrupted, so
    running the same command again finishes an interrupted run. --morphology swaps in your own
    reconstruction (use a new --out: a dataset holds one cell).
    \b
    Examples:
      elmpipe run configs/demo.yaml                 built-in cell, ≈15 min on 2 cores
      elmpipe run configs/demo.yaml -m my_cell.asc -o runs/my_cell
      elmpipe run configs/neuronio.yaml             the Hay cell at NeuronIO scale
    """
    from pipelines.config import ConfigError, load_config, with_overrides
    from pipelines.run import RunConfig, run_pipeline
    from simulations.store import DatasetError
    from surrogate.data import DataError
    from surrogate.train import TrainingError

    try:
        config = load_config(config_path, RunConfig)
        overrides = {"cell.morphology": str(morphology) if morphology else None, "out": out}
        config = with_overrides(config, overrides)
        summary = run_pipeline(config, progress=not quiet, log=click.echo)
    except (ConfigError, DatasetError, DataError, TrainingError) as exc:
        raise BadInput(str(exc)) from exc
    except Exception as exc:
        raise translate(exc) from exc
    click.echo(f"report: {summary['report']}")
