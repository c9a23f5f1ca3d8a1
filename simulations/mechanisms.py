"""Compile a set of NMODL mechanisms once, cache the result, and load one set per process.

The set is elmpipe's own (simulations/mechanisms/), or a lab's cell model's with elmpipe's two
synapses added (:func:`with_elmpipe_synapses`; docs/own-model.md). Functions that take
``sources=None`` mean the set this process has loaded, elmpipe's own before any.

The compiled library is cached under a key made of the .mod files' contents, the NEURON version
and the build variant, so editing a mechanism or upgrading NEURON rebuilds it, and nothing else
does. Many dask workers on one node may ask for the build at the same moment: the build runs under
a file lock and is published by an atomic rename, so it happens once and nobody loads half a build.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from elmpipe.errors import EnvironmentProblem, InputError

MECHANISM_DIR = Path(__file__).parent / "mechanisms"

#: Point processes and density mechanisms this package provides (checked after loading).
MECHANISM_NAMES = (
    "NaTa_t",
    "NaTs2_t",
    "Nap_Et2",
    "K_Tst",
    "K_Pst",
    "SKv3_1",
    "Im",
    "Ih",
    "Ca_HVA",
    "Ca_LVAst",
    "SK_E2",
    "CaDynamics_E2",
    "AmpaNmda",
    "GabaA",
)

#: CoreNEURON compile flags: -ffast-math lets the compiler call the vector maths library for
#: ``exp`` (the channel kinetics are most of the run time); -march=native binds the build to this
#: kind of CPU, which is therefore part of the cache key (docs/simulation-engines.md)
CORENEURON_FLAGS = "-O3 -march=native -ffast-math"

#: build variants and the nrnivmodl options that make them; the variant is part of the cache key.
#: Every process loads the "neuron" build's library; the "coreneuron" build contributes only its
#: libcorenrnmech, which CoreNEURON loads when a run hands the cell over to it.
VARIANTS: dict[str, tuple[str, ...]] = {
    "neuron": (),
    "coreneuron": ("-coreneuron", "-incflags", CORENEURON_FLAGS),
}

#: environment variables that ``import neuron`` sets and a child nrnivmodl must not inherit
_SET_BY_NEURON_IMPORT = ("NEURONHOME", "NMODLHOME", "NMODL_PYLIB")

#: elmpipe's synapse mechanisms, added to a lab's own set (see :func:`with_elmpipe_synapses`)
SYNAPSE_FILES = ("AmpaNmda.mod", "GabaA.mod")

#: a mechanism set: a folder of .mod files, or the files themselves
Sources = Path | Sequence[Path]

_loaded_library: Path | None = None
_loaded_sources: list[Path] | None = None


class MechanismBuildError(EnvironmentProblem):
    """The NMODL mechanisms could not be compiled or loaded."""


class MechanismSetError(InputError):
    """A lab's set of mechanisms is missing, empty, or declares a name twice."""


def cache_root() -> Path:
    """Where compiled artefacts live: ``$ELMPIPE_CACHE_DIR``, else the XDG cache directory."""
    if env := os.environ.get("ELMPIPE_CACHE_DIR"):
        root = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base).expanduser() / "elmpipe"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "it is a file" if root.is_file() else exc.strerror or str(exc)
        raise MechanismBuildError(
            f"the elmpipe cache folder {root} cannot be used ({reason}); set ELMPIPE_CACHE_DIR "
            "to a writable folder"
        ) from None
    return root


def neuron_version() -> str:
    try:
        return metadata.version("neuron")
    except metadata.PackageNotFoundError:  # a NEURON built from source
        from simulations._neuron import neuron_module

        return str(neuron_module().__version__)


def mod_files(source_dir: Path = MECHANISM_DIR) -> list[Path]:
    source_dir = Path(source_dir).expanduser()
    if not source_dir.is_dir():
        raise MechanismSetError(f"mechanisms folder not found: {source_dir}")
    files = sorted(source_dir.glob("*.mod"))
    if not files:
        raise MechanismSetError(f"no .mod files found in {source_dir}")
    return files


def source_files(sources: Sources | None = None) -> list[Path]:
    """The .mod files of a mechanism set: a folder's, a list of files, or (None) the set this
    process has loaded — elmpipe's own until a lab's model loads its set."""
    if sources is None:
        sources = _loaded_sources or MECHANISM_DIR
    if isinstance(sources, str | Path):
        return mod_files(Path(sources))
    files = sorted((Path(p) for p in sources), key=lambda p: p.name)
    if not files:
        raise MechanismSetError("an empty set of mechanisms")
    return files


def _without_comments(text: str) -> str:
    text = re.sub(r"(?ms)^\s*COMMENT\b.*?^\s*ENDCOMMENT\b", "", text)
    return re.sub(r"(?m):.*$", "", text)


def nmodl_names(path: Path) -> list[str]:
    """The mechanism names a .mod file declares (SUFFIX, POINT_PROCESS, ARTIFICIAL_CELL): what
    NEURON will call them, whatever the file is called."""
    try:
        text = _without_comments(Path(path).read_text(errors="replace"))
    except OSError as exc:
        raise MechanismSetError(f"cannot read {path}: {exc.strerror or exc}") from None
    return re.findall(r"\b(?:SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+(\w+)", text)


def with_elmpipe_synapses(lab_dir: Path) -> list[Path]:
    """A lab's mechanisms plus elmpipe's two synapses: the set a lab's cell model runs with.

    The lab's channels replace elmpipe's (labs' L5 models reuse the names NaTa_t, Ih, SK_E2 …
    for their own versions, and NEURON holds one mechanism per name); a lab mechanism named as
    one of elmpipe's synapses, or two lab files declaring one name, would be a silent swap or a
    failed build, so either is refused naming both files.
    """
    lab = mod_files(Path(lab_dir))
    ours = [MECHANISM_DIR / name for name in SYNAPSE_FILES]
    declared: dict[str, Path] = {n: p for p in ours for n in nmodl_names(p)}
    for path in lab:
        for name in nmodl_names(path):
            if name in declared:
                raise MechanismSetError(
                    f"{path} declares the mechanism {name}, as {declared[name]} does"
                    + (" (elmpipe's synapse)" if declared[name].parent == MECHANISM_DIR else "")
                    + ": NEURON can hold only one mechanism of a name; rename one of them"
                )
            declared[name] = path
        if path.name in SYNAPSE_FILES:
            raise MechanismSetError(
                f"{path} has the file name of elmpipe's synapse {MECHANISM_DIR / path.name}; "
                "rename the lab's file"
            )
    return [*lab, *ours]


def mechanisms_sha256(sources: Sources | None = None) -> str:
    """The mechanisms' source, as one hash: a dataset records what computed it, so that a store
    is never continued by mechanisms whose equations have changed since it was started."""
    digest = hashlib.sha256()
    for path in source_files(sources):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def cpu_signature() -> str:
    """The CPU model and instruction-set flags a ``-march=native`` build depends on."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    model = info.get("model name") or platform.processor() or "unknown CPU"
    flags = " ".join(sorted((info.get("flags") or info.get("Features") or "").split()))
    return f"{platform.machine()} {model} {hashlib.sha256(flags.encode()).hexdigest()[:12]}"


def cache_key(sources: Sources | None = None, variant: str = "neuron") -> str:
    """A short name that changes whenever the mod contents, NEURON version or variant change
    (and, for the CPU-specific CoreNEURON build, the CPU and the compile flags)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown build variant {variant!r} (known: {', '.join(VARIANTS)})")
    digest = hashlib.sha256()
    digest.update(f"variant={variant}\nneuron={neuron_version()}\n".encode())
    if variant == "coreneuron":
        digest.update(f"flags={' '.join(VARIANTS[variant])}\ncpu={cpu_signature()}\n".encode())
    for path in source_files(sources):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{variant}-nrn{neuron_version()}-{digest.hexdigest()[:16]}"


def _nrnivmodl() -> str:
    beside_python = Path(sys.executable).parent / "nrnivmodl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nrnivmodl")
    if found is None:
        raise MechanismBuildError(
            "nrnivmodl was not found: install NEURON (pip install neuron) in this environment"
        )
    return found


def find_compiler() -> str:
    """Return the C++ compiler nrnivmodl will use, or explain how to get one."""
    configured = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    program = shlex.split(configured)[0]
    path = shutil.which(program)
    if path is None:
        raise MechanismBuildError(
            f"no C/C++ compiler found (looked for {program!r}, from "
            f"{'$CXX' if os.environ.get('CXX') else 'Python build settings'}). NEURON needs one "
            "to compile elmpipe's ion-channel and synapse mechanisms: install gcc and g++ "
            "(Debian/Ubuntu: apt install g++; macOS: xcode-select --install), or point CXX at "
            "a compiler."
        )
    return path


def _library_in(build_dir: Path) -> Path | None:
    for pattern in ("*/libnrnmech.so", "*/libnrnmech.dylib", "*/.libs/libnrnmech.so"):
        found = sorted(build_dir.glob(pattern))
        if found:
            return found[0]
    return None


def _target(sources: Sources | None, cache_dir: Path | None, variant: str) -> Path:
    return (cache_dir or cache_root()) / "mechanisms" / cache_key(sources, variant)


def compiled_library(
    sources: Sources | None = None, cache_dir: Path | None = None, variant: str = "neuron"
) -> Path | None:
    """The cached library for the current sources, if it has been built."""
    target = _target(sources, cache_dir, variant)
    return _library_in(target) if (target / "manifest.json").exists() else None


def _run_with_progress(
    command: list[str], cwd: Path, env: dict[str, str], variant: str
) -> tuple[int, str]:
    """Run nrnivmodl, ticking a progress bar for every file it translates or compiles.

    A first build takes a minute or more (NEURON and CoreNEURON variants); without a sign of
    life a new user would think the command hung.
    """
    from tqdm import tqdm

    lines: list[str] = []
    label = f"compiling {variant} mechanisms (once per machine)"
    with (
        subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as process,
        tqdm(desc=label, unit=" files", leave=False, file=sys.stderr) as bar,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "NMODL" in line or "Compiling" in line or "Binary" in line:
                bar.update(1)
    return process.returncode, "".join(lines)


def _compile_into(
    work: Path, sources: Sources | None, nrnivmodl: str, variant: str, key: str
) -> None:
    """Run nrnivmodl on a copy of the sources in ``work``; leave the library, the build log and
    a manifest (what was built, from what, how long it took) there."""
    mod_dir = work / "mod"
    mod_dir.mkdir()
    for path in source_files(sources):
        shutil.copy2(path, mod_dir / path.name)
    started = time.perf_counter()
    # Importing neuron sets NEURONHOME/NMODLHOME for its own use; the CoreNEURON transpiler
    # would then look for its units file in the wrong place.
    env = {k: v for k, v in os.environ.items() if k not in _SET_BY_NEURON_IMPORT}
    returncode, output = _run_with_progress(
        [nrnivmodl, *VARIANTS[variant], "mod"], work, env, variant
    )
    (work / "build.log").write_text(output)
    if returncode != 0 or _library_in(work) is None:
        tail = "\n".join(output.splitlines()[-25:])
        files = source_files(sources)
        culprits = ", ".join(str(p) for p in _failing_files(output, files))
        if not culprits:
            blame = ""
        elif variant == "coreneuron":
            blame = f": CoreNEURON cannot take {culprits}"
        else:
            blame = f": the error is in {culprits}"
        folders = ", ".join(sorted({str(p.parent) for p in files}))
        raise MechanismBuildError(
            f"nrnivmodl failed (exit {returncode}) compiling the {variant} build of the "
            f"mechanisms in {folders}{blame}\n{tail}"
        )
    manifest = {
        "key": key,
        "variant": variant,
        "neuron": neuron_version(),
        "machine": platform.machine(),
        "cpu": cpu_signature(),
        "options": list(VARIANTS[variant]),
        "build_seconds": round(time.perf_counter() - started, 2),
        "mod_files": {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in mod_files(mod_dir)
        },
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _failing_files(output: str, files: list[Path]) -> list[Path]:
    """The .mod files an nrnivmodl log blames: named (as NAME.mod, or the NAME.cpp it was
    translated to) on a line that reports an error."""
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    return [
        path
        for path in files
        if any(re.search(rf"\b{re.escape(path.stem)}\.(mod|cpp|c)\b", line) for line in errors)
    ]


def build_mechanisms(
    sources: Sources | None = None,
    cache_dir: Path | None = None,
    *,
    force: bool = False,
    variant: str = "neuron",
) -> Path:
    """Compile the mechanisms with nrnivmodl into the cache; return the library path.

    Returns at once when the current sources are already built (unless ``force``).
    """
    target = _target(sources, cache_dir, variant)
    root, key = target.parent, target.name
    if not force and (lib := compiled_library(sources, cache_dir, variant)) is not None:
        return lib
    find_compiler()
    nrnivmodl = _nrnivmodl()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f"{key}.lock", "w")
    except OSError as exc:
        raise MechanismBuildError(
            f"cannot write the elmpipe cache folder {root} ({exc.strerror or exc}), where the "
            "mechanisms are compiled; set ELMPIPE_CACHE_DIR to a writable folder"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and (lib := compiled_library(sources, cache_dir, variant)) is not None:
            return lib  # another process built it while we waited
        work = Path(tempfile.mkdtemp(prefix=f"{key}.building-", dir=root))
        try:
            _compile_into(work, sources, nrnivmodl, variant, key)
            if target.exists():
                # a forced rebuild: move the old build aside (a running process may still map it)
                shutil.rmtree(target, ignore_errors=True)
            os.rename(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    library = _library_in(target)
    assert library is not None
    return library


def build_info(
    sources: Sources | None = None, cache_dir: Path | None = None, variant: str = "neuron"
) -> dict:
    """The manifest of the cached build (key, NEURON version, build time, mod hashes)."""
    target = _target(sources, cache_dir, variant)
    return json.loads((target / "manifest.json").read_text())


def coreneuron_library(sources: Sources | None = None, cache_dir: Path | None = None) -> Path:
    """Build (once per cache) and return the CoreNEURON mechanism library for this CPU."""
    library = build_mechanisms(sources, cache_dir, variant="coreneuron")
    core = library.parent / "libcorenrnmech.so"
    if not core.exists():
        found = sorted(library.parent.glob("libcorenrnmech*"))
        if not found:
            raise MechanismBuildError(
                f"the CoreNEURON build in {library.parent} has no libcorenrnmech library; "
                "is this NEURON built with CoreNEURON support?"
            )
        core = found[0]
    return core


def _folders(files: Sequence[Path]) -> str:
    return ", ".join(sorted({str(p.parent) for p in files}))


def load_mechanisms(sources: Sources | None = None, cache_dir: Path | None = None) -> Path:
    """Build if needed, then load a mechanism set into this process (once).

    ``sources``: elmpipe's own mechanisms by default, or a lab model's set
    (:func:`with_elmpipe_synapses`). NEURON cannot unload a library, and a lab's channels carry
    the names of elmpipe's, so a process holds one set: asking for another is an error.
    """
    global _loaded_library, _loaded_sources
    files = source_files(MECHANISM_DIR if sources is None else sources)
    if _loaded_library is not None and _loaded_sources is not None:
        if mechanisms_sha256(files) == mechanisms_sha256(_loaded_sources):
            return _loaded_library
        raise MechanismBuildError(
            f"this process already holds the mechanisms in {_folders(_loaded_sources)}; NEURON "
            f"cannot unload them, so the mechanisms in {_folders(files)} (another cell model's) "
            "need a process of their own: run that model in a separate command"
        )
    from simulations._neuron import hoc

    h = hoc()
    names = [name for path in files for name in nmodl_names(path)]
    clashes = [name for name in names if hasattr(h, name)]
    if clashes:
        raise MechanismBuildError(
            f"mechanisms named as those in {_folders(files)} are already in this process "
            f"({', '.join(clashes)}): NEURON's own, another model's nrnivmodl build, or an "
            "x86_64/ folder in the working directory. Run elmpipe in a clean process (and "
            "rename a lab mechanism that NEURON already has)."
        )
    library = build_mechanisms(files, cache_dir)
    if not h.nrn_load_dll(str(library)):
        raise MechanismBuildError(f"NEURON could not load {library}")
    missing = [name for name in names if not hasattr(h, name)]
    if missing:
        raise MechanismBuildError(f"{library} lacks mechanisms {', '.join(missing)}")
    _loaded_library, _loaded_sources = library, files
    return library
