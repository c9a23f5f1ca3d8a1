"""elmpipe mechanisms: compile the NMODL mechanisms."""

from __future__ import annotations

import click

from pipelines.commands.common import (
    EPILOG,
    EnvironmentProblem,
)

# -- mechanisms -------------------------------------------------------------------------------


@click.group(epilog=EPILOG)
def mechanisms() -> None:
    """Compile elmpipe's NMODL channel and synapse mechanisms (done automatically on first use)."""


@mechanisms.command("build", epilog=EPILOG)
@click.option("--force", is_flag=True, help="Rebuild even when the cache is current.")
def mechanisms_build(force: bool) -> None:
    """Compile the mechanisms with nrnivmodl into the cache and print where they are.

    The cache lives in $ELMPIPE_CACHE_DIR (default ~/.cache/elmpipe) and is keyed by the .mod
    contents and the NEURON version, so it is rebuilt only when one of them changes.
    """
    from simulations.mechanisms import MechanismBuildError, build_info, build_mechanisms

    try:
        library = build_mechanisms(force=force)
    except MechanismBuildError as exc:
        raise EnvironmentProblem(str(exc)) from exc
    info = build_info()
    click.echo(f"mechanisms ready: {library}")
    click.echo(f"cache key {info['key']} · built in {info['build_seconds']} s")


@mechanisms.command("info", epilog=EPILOG)
def mechanisms_info() -> None:
    """Show the cache key and whether the current mechanisms are built."""
    from simulations.mechanisms import cache_key, cache_root, compiled_library

    library = compiled_library()
    click.echo(f"cache      {cache_root() / 'mechanisms'}")
    click.echo(f"key        {cache_key()}")
    click.echo(f"built      {library if library else 'no (run: elmpipe mechanisms build)'}")
