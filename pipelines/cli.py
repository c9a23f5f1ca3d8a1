"""The ``elmpipe`` command line.

Exit codes (elmpipe.errors maps them, here and nowhere else): 0 success; 1 unexpected failure (a
bug: please report it, with the traceback printed); 2 bad input or usage (a missing or broken
file, an invalid option or config, a path that cannot be written); 3 the environment cannot run
the step (no C++ compiler, NEURON cannot build or load the mechanisms, no GPU); 130 interrupted
(Ctrl-C or SIGTERM), without a traceback — what finished stays written, and running the same
command again resumes.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import click

from elmpipe.errors import (
    EXIT_BAD_INPUT,
    EXIT_CODES_HELP,
    EXIT_ENVIRONMENT,
    EXIT_INTERRUPTED,
    DataWarning,
    ElmpipeError,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_ENVIRONMENT", "EXIT_INTERRUPTED", "cli", "main"]

#: command → (the module that defines it, its one-line summary). Modules are imported when their
#: command runs, so that `elmpipe simulate` does not pay for importing PyTorch, nor `elmpipe fit`
#: for NEURON, and `elmpipe --help` lists the summaries without importing any (a test holds them
#: equal to the commands' own).
COMMANDS = {
    "cell": (
        "pipelines.commands.cell",
        "Build the L5PC model (a morphology, or a lab's template) and look at it.",
    ),
    "simulate": (
        "pipelines.commands.data",
        "Simulate the cell with NeuronIO inputs into a Zarr dataset, in parallel, resumably.",
    ),
    "dataset": (
        "pipelines.commands.data",
        "Look at datasets, and convert from and to the original NeuronIO pickle files.",
    ),
    "fit": ("pipelines.commands.fit", "Train one surrogate (ELM by default) on a dataset."),
    "sweep": (
        "pipelines.commands.fit",
        "Train a grid of surrogates, one task per grid point, and tabulate them.",
    ),
    "pretrain": (
        "pipelines.commands.fit",
        "Pretrain the cell-general Branch-ELM on datasets of several cells.",
    ),
    "evaluate": (
        "pipelines.commands.evaluate",
        "Evaluate a surrogate with the NeuronIO protocol; write metrics.json, roc.png, "
        "traces.png and spikes.csv.",
    ),
    "run": (
        "pipelines.commands.run",
        "Run the whole pipeline: simulate → describe → fit (or sweep) → evaluate → report.",
    ),
    "task": (
        "pipelines.commands.tasks",
        "Secondary benchmarks: Long Range Arena and SHD / SHD-Adding (from your data files).",
    ),
    "mechanisms": (
        "pipelines.commands.mechanisms",
        "Compile elmpipe's NMODL channel and synapse mechanisms (done automatically on first use).",
    ),
}


class ElmpipeGroup(click.Group):
    """Click's group, loading commands lazily, with elmpipe's errors and interruptions mapped to
    their exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        command = getattr(importlib.import_module(COMMANDS[cmd_name][0]), cmd_name)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the summaries, so that help imports no command."""
        rows = [(name, summary) for name, (_, summary) in COMMANDS.items()]
        rows += [
            (name, command.get_short_help_str())
            for name, command in self.commands.items()
            if name not in COMMANDS
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **kwargs: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **kwargs)
        try:
            with _data_warnings_plainly():
                code = super().main(args, prog_name, complete_var, standalone_mode=False, **kwargs)
        except (KeyboardInterrupt, click.exceptions.Abort):
            _exit_interrupted()
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except ElmpipeError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            if full := _disk_full(exc):
                click.echo(
                    f"Error: no space left on the disk ({full}). What finished before is "
                    "written and intact; free space (or choose another output) and run the same "
                    "command to resume.",
                    err=True,
                )
                sys.exit(EXIT_ENVIRONMENT)
            if not _caused_by_interrupt(exc):
                raise
            # Ctrl-C inside compiled code (a numba kernel) surfaces as a SystemError whose
            # cause is the KeyboardInterrupt; it is still the user's interruption
            _exit_interrupted()
        sys.exit(code if isinstance(code, int) else 0)


@contextlib.contextmanager
def _data_warnings_plainly() -> Iterator[None]:
    """Every DataWarning as "warning: …" on stderr (no file and line: it is about the data)."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DataWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", DataWarning)
        warnings.showwarning = show
        yield


def _exit_interrupted() -> NoReturn:
    # Work cut short fails again as the interpreter shuts down, noise after this line: zarr's
    # reads (on an event loop of its own: "Task exception was never retrieved") and numba's
    # half-compiled code ("Exception ignored in: ObjectRef.__del__").
    logging.getLogger("asyncio").disabled = True
    sys.unraisablehook = lambda _: None
    click.echo("Interrupted: what finished is written; run the same command to resume.", err=True)
    sys.exit(EXIT_INTERRUPTED)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def _disk_full(exc: BaseException) -> str:
    """What ran out of space, if ``exc`` (or what caused it) is a full disk or quota ('' if not):
    writers deep in zarr, torch or HDF5 raise it as OSError, RuntimeError or their own type."""
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return str(error.filename or error.strerror)
        if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
            return str(error).splitlines()[0][:200]
    return ""


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@click.group(
    cls=ElmpipeGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
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


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    # a batch system's or a user's `kill` then shuts local worker processes down cleanly, as
    # Ctrl-C does, instead of leaving them running as orphans
    raise KeyboardInterrupt


# Local workers ended on an interrupt (pipelines.cluster) leave a compressor's lock behind, which
# multiprocessing's resource tracker (started with these options) removes, printing a warning that
# would follow "Interrupted" on every Ctrl-C.
QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    if QUIET_TRACKER not in sys.warnoptions:
        sys.warnoptions.append(QUIET_TRACKER)
    cli(prog_name="elmpipe")


if __name__ == "__main__":
    main()
