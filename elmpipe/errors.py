"""Every error elmpipe raises on purpose, and the exit code each one means — in one place.

One root, :class:`ElmpipeError`, with two branches that also subclass the builtin they mean (as
zarr-python does): :class:`InputError` (a ``ValueError``: a missing or broken file, an invalid
option or config, a path that cannot be written — the user can fix it; exit 2) and
:class:`EnvironmentProblem` (a ``RuntimeError``: the machine cannot run the step — no compiler, no
GPU; exit 3). Stage modules subclass these; the command line maps them with :func:`exit_code`
and prints their message without a traceback. Anything else that escapes is a bug (exit 1).
:class:`DataWarning` is not an error: the step goes on, and the command line shows it plainly.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention for Ctrl-C

EXIT_CODES_HELP = (
    "Exit codes: 0 ok · 1 unexpected failure (a bug) · 2 bad input or usage · "
    "3 environment problem (compiler, NEURON build, GPU) · 130 interrupted."
)


class ElmpipeError(Exception):
    """Root of every error elmpipe raises on purpose."""

    exit_code = EXIT_BUG


class InputError(ElmpipeError, ValueError):
    """Bad input: the user can fix it (file, option, config, output path)."""

    exit_code = EXIT_BAD_INPUT


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder the command needs does not exist."""


class ConfigError(InputError):
    """A config file or option is invalid; the message names the file (or option) and key."""


class OutputPathError(InputError):
    """Output cannot go where it was asked to (read-only, a file where a folder is needed, …)."""


class DatasetError(InputError):
    """A dataset is missing, damaged, or incompatible with what was asked of it."""


class EnvironmentProblem(ElmpipeError, RuntimeError):
    """The machine cannot run the step (no C++ compiler, NEURON cannot build, no GPU)."""

    exit_code = EXIT_ENVIRONMENT


class DataWarning(UserWarning):
    """The step runs, but its result rests on data that deserve a look first (no validation
    spike, an output far from its target). The command line prints these as "warning: …" on
    stderr; runs record them where a user reads the result (result.json, the report)."""


def exit_code(error: BaseException) -> int:
    """The documented exit code for ``error`` (1 for anything elmpipe did not raise on purpose)."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, ElmpipeError):
        return error.exit_code
    return EXIT_BUG
