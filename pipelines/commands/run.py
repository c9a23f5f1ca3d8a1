"""elmpipe run: the whole pipeline from a config."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.commands.common import (
    EPILOG,
    apical_trees,
    cell_model_overrides,
    morphology_option,
    quiet_option,
)

# -- run ------------------------------------------------------------------------------------


@click.command(epilog=EPILOG)
@click.argument(
    "config_path", metavar="CONFIG.yaml", type=click.Path(path_type=Path, dir_okay=False)
)
@morphology_option
@click.option("--out", "-o", help="Run folder (overrides the config's `out`).")
@quiet_option
def run(config_path: Path, morphology: Path | None, out: str | None, quiet: bool) -> None:
    """Run the whole pipeline: simulate → describe → fit (or sweep) → evaluate → report.

    \b
    Every stage is skipped when its output is complete and resumed when it was interrupted, so
    running the same command again finishes an interrupted run. The whole config is checked
    against the cell first, so a mistake in any section stops the run before the first
    simulation. --morphology swaps in your own reconstruction; its run folder is the config's
    `out` with the file's name appended (runs/demo-my_cell) unless --out names one; --template
    runs a lab's own cell model instead, named after its template file (docs/own-model.md). A
    new cell's input scale is calibrated in the plan stage (docs/own-cell.md).
    \b
    Examples:
      elmpipe run configs/demo.yaml                 built-in cell, ≈3 min on 2 cores
      elmpipe run configs/demo.yaml -m my_cell.asc   into runs/demo-my_cell
      elmpipe run configs/demo.yaml --template L5PC.hoc --template-name L5PC \\
          --template-arg cell1.asc --mechanisms mod/   a lab's model: runs/demo-L5PC
      elmpipe run configs/neuronio.yaml             the Hay cell at NeuronIO scale
    """
    from pipelines.config import RunConfig, load_config, with_overrides
    from pipelines.run import run_pipeline

    config = load_config(config_path, RunConfig)
    name = None
    model = cell_model_overrides().get("cell.template")
    own = morphology if morphology is not None else Path(model) if model else None
    if own is not None:
        name = f"{config.name} — {own.name}"  # the report says which cell it is about
        if out is None:
            # a dataset holds one cell: another cell gets its own run folder, named after it
            out = f"{config.out.rstrip('/')}-{own.stem}"
    overrides = {
        "name": name,
        "cell.morphology": str(morphology) if morphology else None,
        "cell.apical_trees": apical_trees(),
        **cell_model_overrides(),
        "out": out,
    }
    config = with_overrides(config, overrides)
    summary = run_pipeline(config, source=str(config_path), progress=not quiet, log=click.echo)
    click.echo(f"report: {summary['report']}")
