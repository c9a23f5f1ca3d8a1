"""Building and loading the NMODL mechanisms: cache keys, reuse, clear errors, portability."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from simulations import mechanisms
from simulations.mechanisms import (
    MECHANISM_DIR,
    MECHANISM_NAMES,
    MechanismBuildError,
    MechanismSetError,
    build_mechanisms,
    cache_key,
    load_mechanisms,
    mod_files,
    nmodl_names,
    with_elmpipe_synapses,
)


def test_every_mechanism_has_a_mod_file():
    suffixes = set()
    for path in MECHANISM_DIR.glob("*.mod"):
        match = re.search(r"^\s*(SUFFIX|POINT_PROCESS)\s+(\w+)", path.read_text(), re.MULTILINE)
        assert match, path
        suffixes.add(match.group(2))
    assert suffixes == set(MECHANISM_NAMES)


@pytest.mark.parametrize("path", sorted(MECHANISM_DIR.glob("*.mod")), ids=lambda p: p.stem)
def test_mod_files_are_coreneuron_friendly(path):
    text = path.read_text()
    code = re.sub(r"COMMENT.*?ENDCOMMENT", "", text, flags=re.DOTALL)
    assert re.search(r"^\s*THREADSAFE\b", code, re.MULTILINE)
    for forbidden in ("VERBATIM", "POINTER", "BBCOREPOINTER", "random", "scop_random", "erand"):
        assert forbidden not in code, f"{path.name} uses {forbidden}"


def test_cache_key_tracks_mod_contents(tmp_path):
    copy = tmp_path / "mod"
    shutil.copytree(MECHANISM_DIR, copy)
    assert cache_key(copy) == cache_key(MECHANISM_DIR)
    target = copy / "Im.mod"
    target.write_text(target.read_text() + "\n: edited\n")
    assert cache_key(copy) != cache_key(MECHANISM_DIR)
    assert cache_key(MECHANISM_DIR, variant="coreneuron") != cache_key(MECHANISM_DIR)


def test_cache_key_tracks_neuron_version(monkeypatch):
    before = cache_key()
    monkeypatch.setattr(mechanisms, "neuron_version", lambda: "99.0.0")
    assert cache_key() != before
    assert "nrn99.0.0" in cache_key()


def test_loaded_once_and_build_reused(monkeypatch):
    library = load_mechanisms()
    assert load_mechanisms() == library

    def no_compiling(*args, **kwargs):
        raise AssertionError("nrnivmodl must not run again for unchanged sources")

    monkeypatch.setattr(subprocess, "run", no_compiling)
    assert build_mechanisms() == library


def test_missing_compiler_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler-elmpipe")
    with pytest.raises(MechanismBuildError, match=r"no C/C\+\+ compiler found.*no-such-compiler"):
        build_mechanisms(cache_dir=tmp_path)
    assert not (tmp_path / "mechanisms" / cache_key()).exists()


def test_broken_mod_file_reports_nrnivmodl_output(tmp_path):
    source = tmp_path / "mod"
    source.mkdir()
    (source / "broken.mod").write_text("NEURON { SUFFIX broken }\nBREAKPOINT { x = }\n")
    with pytest.raises(MechanismBuildError, match="nrnivmodl failed") as info:
        build_mechanisms(source, cache_dir=tmp_path / "cache")
    assert "broken" in str(info.value)
    leftovers = list((tmp_path / "cache" / "mechanisms").glob("*building*"))
    assert leftovers == []  # a failed build leaves nothing that looks like a cache entry


def test_empty_source_directory(tmp_path):
    with pytest.raises(MechanismSetError, match=r"no \.mod files"):
        build_mechanisms(tmp_path, cache_dir=tmp_path)


@pytest.mark.slow
def test_mechanisms_compile_for_coreneuron(tmp_path):
    """THREADSAFE, no VERBATIM/POINTER: the same files must build for CoreNEURON (≈1 min)."""
    library = build_mechanisms(cache_dir=tmp_path, variant="coreneuron")
    assert library.exists()
    assert list(library.parent.glob("*corenrnmech*"))


def test_nmodl_names_are_what_the_neuron_block_declares_comments_aside(tmp_path):
    mod = tmp_path / "anything.mod"
    mod.write_text(
        "COMMENT\nSUFFIX NotThis\nENDCOMMENT\n: POINT_PROCESS NorThis\n"
        "NEURON {\n  POINT_PROCESS ProbSyn  : the lab's synapse\n  RANGE tau\n}\n"
    )
    assert nmodl_names(mod) == ["ProbSyn"]
    assert sorted(n for p in mod_files() for n in nmodl_names(p)) == sorted(MECHANISM_NAMES)


def test_two_lab_files_declaring_one_mechanism_are_refused_naming_both(tmp_path):
    for name in ("a.mod", "b.mod"):
        (tmp_path / name).write_text("NEURON { SUFFIX kdr_lab }\n")
    with pytest.raises(
        MechanismSetError, match=r"b\.mod declares the mechanism kdr_lab, as .*a\.mod"
    ):
        with_elmpipe_synapses(tmp_path)


def test_a_process_holds_one_mechanism_set(tmp_path):
    load_mechanisms()  # elmpipe's own, as every test process has them
    (tmp_path / "kdr_lab.mod").write_text("NEURON { SUFFIX kdr_lab }\n")
    with pytest.raises(
        MechanismBuildError, match=r"already holds the mechanisms in .*need a process"
    ):
        load_mechanisms(with_elmpipe_synapses(tmp_path))
    assert load_mechanisms(mod_files()) == load_mechanisms()  # the same set, given as files
