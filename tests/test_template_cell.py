"""A lab's own cell model — a NEURON template with its own mechanisms — through elmpipe.

Every model is built in a fresh process (tests/engine_runs.py, or the command line): this test
process holds elmpipe's own mechanisms, and NEURON holds one set of mechanisms per process. The
example model (examples/own-model: a template and a channel elmpipe does not have) is the one
docs/own-model.md runs; the broken models below are written by the tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from elmpipe.dataset import Dataset
from simulations.mechanisms import MECHANISM_DIR, SYNAPSE_FILES, nmodl_names
from tests.engine_runs import assert_matches_reference, run_in_fresh_process
from tests.test_pipeline import MINI

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-model"
TOY = {
    "template": str(EXAMPLE / "ToyPyramid.hoc"),
    "name": "ToyPyramid",
    "mechanisms": str(EXAMPLE / "mechanisms"),
}
TOY_OPTIONS = [
    "--template",
    TOY["template"],
    "--template-name",
    "ToyPyramid",
    "--mechanisms",
    TOY["mechanisms"],
]
#: the toy's sections as its template defines them (name, length µm)
TOY_DENDRITES = [(f"dend[{i}]", 160.0) for i in range(4)] + [
    (f"apic[{i}]", length) for i, length in enumerate([320, 300, 260, 240, 150, 130, 200])
]


def elmpipe(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """The example model, 1 s of NeuronIO input, on the default engine and the reference."""
    tmp = tmp_path_factory.mktemp("template")
    return {
        engine: run_in_fresh_process(engine, tmp / f"{engine}.npz", cell=TOY)
        for engine in ("coreneuron", "neuron-cvode")
    }


def test_a_template_cell_has_the_segments_its_template_defines(toy_runs):
    run = toy_runs["coreneuron"]
    expected_sections, expected_x = [], []
    for name, length in TOY_DENDRITES:  # the template's rule: nseg = 1 + 2 int(L / 40)
        nseg = 1 + 2 * int(length / 40)
        expected_sections += [name] * nseg
        expected_x += list((np.arange(nseg) + 0.5) / nseg)
    assert run["section"].tolist() == expected_sections  # basal in list order, then apical
    np.testing.assert_allclose(run["x"], expected_x, rtol=1e-12)
    assert run["nexus"][0] in {name for name, _ in TOY_DENDRITES if name.startswith("apic")}


def test_a_template_cell_runs_alike_on_the_default_engine_and_the_reference(toy_runs):
    assert_matches_reference(toy_runs["neuron-cvode"], toy_runs["coreneuron"])


def test_elmpipes_hay_cell_written_as_a_template_is_the_built_in_hay_cell(hay_path, tmp_path):
    """examples/hay-template with elmpipe's channel files as the lab's (same names, from the
    lab's folder): the same segment table and the same 1 s run as the built-in path."""
    lab = tmp_path / "lab-mechanisms"
    lab.mkdir()
    for path in MECHANISM_DIR.glob("*.mod"):
        if path.name not in SYNAPSE_FILES:
            shutil.copy(path, lab / path.name)
    template = {
        "template": str(ROOT / "examples" / "hay-template" / "ElmpipeL5PC.hoc"),
        "name": "ElmpipeL5PC",
        "args": [str(hay_path)],
        "mechanisms": str(lab),
    }
    built_in = run_in_fresh_process(
        "coreneuron", tmp_path / "built-in.npz", morphology=str(hay_path)
    )
    from_template = run_in_fresh_process("coreneuron", tmp_path / "template.npz", cell=template)
    for column in ("section", "x", "nexus"):
        assert from_template[column].tolist() == built_in[column].tolist()
    # the same 3-D points, which NEURON keeps in float32 (the built-in path checks and may
    # rewrite the file before Import3d reads it: the last float32 bit can differ)
    for column in ("distance", "area"):
        np.testing.assert_allclose(from_template[column], built_in[column], rtol=1e-6)
    assert len(built_in["spike_times"]) >= 1
    np.testing.assert_array_equal(from_template["spike_times"], built_in["spike_times"])
    np.testing.assert_allclose(from_template["soma_v"], built_in["soma_v"], rtol=0, atol=1e-4)


def test_a_store_records_the_model_and_refuses_to_be_grown_with_another(tmp_path):
    store = tmp_path / "toy.zarr"
    short = ["--duration-ms", "300", "--input-scale", "1", "--cluster", "in-process", "-q"]
    made = elmpipe("simulate", "-o", str(store), "-n", "1", *short, *TOY_OPTIONS)
    assert made.returncode == 0, made.stderr
    cell = Dataset(store).cell
    model = cell["template"]
    assert model["name"] == "ToyPyramid"
    assert Path(model["template"]) == Path(TOY["template"]).resolve()
    own = EXAMPLE / "mechanisms" / "IhToy.mod"
    assert set(model["mechanism_files_sha256"]) == {own.name, *SYNAPSE_FILES}
    assert nmodl_names(own) == ["IhToy"]
    assert len(cell["segment_table"]["section"]) == 119
    # the built-in cell, and the same template made with another argument, are other cells
    for other in ([], [*TOY_OPTIONS, "--template-arg", "1.3"]):
        grown = elmpipe("simulate", "-o", str(store), "-n", "2", *short, *other)
        assert grown.returncode == 2, grown.stderr
        assert "different cell" in grown.stderr
        assert "ToyPyramid" in grown.stderr  # it says which model the store holds
    assert Dataset(store).split("train").complete_mask.tolist() == [True]
    # a replay of the store's inputs through the same model reproduces it
    replay = tmp_path / "replay.zarr"
    replayed = elmpipe(
        "simulate", "-o", str(replay), "--split", "train", "-n", "1", "--replay", str(store),
        "--replay-split", "train",
        "--duration-ms", "300", "--cluster", "in-process", "-q", *TOY_OPTIONS,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    original = Dataset(store).split("train").simulation(0)["soma_v"]
    np.testing.assert_array_equal(Dataset(replay).split("train").simulation(0)["soma_v"], original)


def test_elmpipe_run_end_to_end_on_a_template_cell(tmp_path):
    config = tmp_path / "mini.yaml"
    # the calibration as by default, on half of its probe (the test's time, not the point)
    calibration = {"probe_simulations": 4, "tolerance": 0.3}
    data = {**MINI["data"], "calibration": calibration}
    config.write_text(yaml.safe_dump({**MINI, "data": data, "out": str(tmp_path / "run")}))
    done = elmpipe("run", str(config), "-q", *TOY_OPTIONS)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "run-ToyPyramid"  # a run folder of its own, named after the template
    data = Dataset(out / "data.zarr")
    assert data.cell["template"]["name"] == "ToyPyramid"
    assert data.protocol["input_scale"] != 1.0  # calibrated to this cell
    assert (out / "report" / "index.html").exists()
    assert "ToyPyramid" in (out / "report" / "index.html").read_text()


# -- what a lab's model can get wrong ------------------------------------------------------------

RAISES = "class Raise:\n    def __init__(self):\n        raise ValueError('no x')\n"
BROKEN_HOC = "begintemplate Broken\npublic soma\ncreate soma\nproc init() { soma { L = } }\n"


@pytest.mark.parametrize(
    ("files", "options", "message"),
    [
        (
            {"Broken.hoc": BROKEN_HOC + "endtemplate Broken\n"},
            ["--template-name", "Broken"],
            "syntax error",
        ),
        (
            {"Cell.hoc": "// nothing\n"},
            ["--template-name", "Cell"],
            "defines no template named 'Cell'",
        ),
        (
            {"Bare.hoc": "begintemplate Bare\npublic soma\ncreate soma\nendtemplate Bare\n"},
            ["--template-name", "Bare"],
            "none of basal, dend for its basal sections",
        ),
        (
            {"Raise.py": RAISES},
            ["--template-name", "Raise"],
            "ValueError: no x",
        ),
    ],
    ids=["hoc-syntax", "no-such-template", "no-basal-list", "python-raises"],
)
def test_a_broken_template_is_named_and_leaves_the_command_clean(tmp_path, files, options, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    template = tmp_path / next(iter(files))
    done = elmpipe("cell", "info", "--no-sim", "--template", str(template), *options, timeout=300)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_lab_mechanism_named_as_an_elmpipe_synapse_is_refused_naming_both_files(tmp_path):
    lab = tmp_path / "mechanisms"
    lab.mkdir()
    (lab / "MySyn.mod").write_text(
        "NEURON { POINT_PROCESS AmpaNmda }\n: a lab synapse under elmpipe's synapse's name\n"
    )
    done = elmpipe(
        "cell", "info", "--no-sim", "--template", TOY["template"], "--template-name",
        "ToyPyramid", "--mechanisms", str(lab), timeout=300,
    )  # fmt: skip
    assert done.returncode == 2  # the lab's input, not this machine
    assert str(lab / "MySyn.mod") in done.stderr
    assert str(MECHANISM_DIR / "AmpaNmda.mod") in done.stderr


def test_a_missing_template_file_is_named(tmp_path):
    done = elmpipe("cell", "info", "--no-sim", "--template", str(tmp_path / "No.hoc"),
                   "--template-name", "No")  # fmt: skip
    assert done.returncode == 2 and f"template not found: {tmp_path / 'No.hoc'}" in done.stderr


def test_template_options_without_a_template_and_a_template_with_a_morphology_are_refused():
    alone = elmpipe("cell", "info", "--no-sim", "--template-name", "ToyPyramid")
    assert alone.returncode == 2 and "--template-name: only with --template" in alone.stderr
    both = elmpipe("cell", "info", "--no-sim", "-m", "x.asc", *TOY_OPTIONS)
    assert both.returncode == 2 and "takes no morphology" in both.stderr


def test_a_mechanism_coreneuron_cannot_take_is_named_and_a_neuron_engine_runs_when_asked(
    tmp_path,
):
    lab = tmp_path / "mechanisms"
    lab.mkdir()
    shutil.copy(EXAMPLE / "mechanisms" / "IhToy.mod", lab)
    (lab / "HocLookup.mod").write_text(  # NEURON's hoc interpreter, which CoreNEURON has not
        "NEURON { SUFFIX HocLookup RANGE g }\nPARAMETER { g = 0 }\nBREAKPOINT {\nVERBATIM\n"
        '    g = hoc_lookup("celsius") ? 1.0 : 0.0;\nENDVERBATIM\n}\n'
    )
    options = [*TOY_OPTIONS[:4], "--mechanisms", str(lab)]
    store = tmp_path / "toy.zarr"
    short = ["-n", "1", "--duration-ms", "200", "--input-scale", "1", "--cluster", "in-process"]
    refused = elmpipe("simulate", "-o", str(store), *short, *options)
    assert refused.returncode == 3, refused.stderr  # the environment cannot run that engine
    assert f"CoreNEURON cannot take {lab / 'HocLookup.mod'}" in refused.stderr
    assert "--engine neuron-fixed" in refused.stderr
    asked = elmpipe("simulate", "-o", str(store), *short, *options, "--engine", "neuron-fixed")
    assert asked.returncode == 0, asked.stderr
    assert Dataset(store).attrs["simulation"]["engine"] == "neuron-fixed"


def test_a_lab_synapse_takes_the_place_of_elmpipes(toy_runs, tmp_path):
    """NEURON's ExpSyn as the model's inhibitory synapse (weight-1 events: 1 µS each)."""
    lab_synapse = {"inhibitory": {"mechanism": "ExpSyn", "parameters": {"tau": 8.0, "e": -80.0}}}
    cell = {**TOY, "synapse_mechanisms": lab_synapse}
    run = run_in_fresh_process("coreneuron", tmp_path / "expsyn.npz", cell=cell)
    ours = toy_runs["coreneuron"]
    assert run["section"].tolist() == ours["section"].tolist()
    assert run["soma_v"].mean() < ours["soma_v"].mean() - 1.0  # far stronger inhibition
    wrong = {"inhibitory": {"mechanism": "ExpSyn", "parameters": {"gmax": 1.0}}}
    with pytest.raises(RuntimeError, match="ExpSyn has no parameter 'gmax'"):
        run_in_fresh_process(
            "coreneuron", tmp_path / "x.npz", cell={**TOY, "synapse_mechanisms": wrong}
        )


# -- the other ways a model is written ------------------------------------------------------------

PRELOAD = "proc make_passive() { forsec $o1 { insert pas  g_pas = 1e-4  e_pas = -70 } }\n"
TINY_HOC = """begintemplate Tiny
public soma, dend, apic, all
external make_passive
create soma, dend[2], apic[1]
objref all
proc init() { local i
    all = new SectionList()
    soma { L = 20  diam = 20  all.append() }
    for i = 0, 1 { dend[i] { L = 100  diam = 1  nseg = $1  all.append() } }
    apic[0] { L = 400  diam = 2  nseg = 3 * $1  all.append() }
    for i = 0, 1 connect dend[i](0), soma(0)
    connect apic[0](0), soma(1)
    make_passive(all)
}
endtemplate Tiny
"""
TINY_PY = """from neuron import h


class Tiny:
    def __init__(self, nseg):
        self.soma = [h.Section(name="soma", cell=self)]
        self.dend = [h.Section(name=f"dend[{i}]", cell=self) for i in range(2)]
        self.trunk = [h.Section(name="trunk", cell=self)]
        for sec in self.dend:
            sec.L, sec.diam, sec.nseg = 100, 1, nseg
            sec.connect(self.soma[0](0))
        self.trunk[0].L, self.trunk[0].diam, self.trunk[0].nseg = 400, 2, 3 * nseg
        self.trunk[0].connect(self.soma[0](1))
        for sec in [*self.soma, *self.dend, *self.trunk]:
            sec.insert("pas")

    def __repr__(self):
        return "Tiny[0]"
"""


def test_a_hoc_template_with_arguments_and_a_preload(tmp_path):
    (tmp_path / "lib.hoc").write_text(PRELOAD)
    (tmp_path / "Tiny.hoc").write_text(TINY_HOC)
    done = elmpipe(
        "cell", "info", "--no-sim", "--json", "--template", str(tmp_path / "Tiny.hoc"),
        "--template-name", "Tiny", "--template-arg", "2", "--preload", str(tmp_path / "lib.hoc"),
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["segments"]["basal"] == 4 and info["segments"]["apical"] == 6  # nseg from args
    assert info["nexus"]["section"] == "apic[0]"  # found through the section array `apic`
    assert info["template"]["args"] == [2]


def test_a_python_template_with_a_section_list_named_in_the_config(tmp_path):
    (tmp_path / "tiny.py").write_text(TINY_PY)
    cell = {"template": str(tmp_path / "tiny.py"), "name": "Tiny", "args": [2]}
    config = tmp_path / "cell.yaml"
    config.write_text(yaml.safe_dump({"cell": cell}))
    store = tmp_path / "tiny.zarr"
    short = ["-n", "1", "--duration-ms", "100", "--input-scale", "1", "--cluster", "in-process"]
    unnamed = elmpipe("simulate", "-c", str(config), "-o", str(store), *short)
    assert unnamed.returncode == 2 and "none of apical, apic" in unnamed.stderr
    assert "section_lists" in unnamed.stderr  # … and says how to name it
    config.write_text(yaml.safe_dump({"cell": {**cell, "section_lists": {"apical": "trunk"}}}))
    done = elmpipe("simulate", "-c", str(config), "-o", str(store), *short)
    assert done.returncode == 0, done.stderr
    table = Dataset(store).cell["segment_table"]
    assert table["section"] == ["dend[0]"] * 2 + ["dend[1]"] * 2 + ["trunk"] * 6
    assert Dataset(store).cell["nexus"]["section"] == "trunk"


def test_a_failing_template_leaves_this_processs_neuron_usable(tmp_path):
    """The template stops hoc in the throw-away process, not in this one."""
    from simulations._neuron import hoc
    from simulations.cell import CellSpec
    from simulations.template import CellModelError

    (tmp_path / "Broken.hoc").write_text(BROKEN_HOC + "endtemplate Broken\n")
    with pytest.raises(CellModelError, match="syntax error"):
        CellSpec(template=str(tmp_path / "Broken.hoc"), name="Broken").build()
    h = hoc()
    h("still_usable = 7")
    assert h.still_usable == 7
    assert not hasattr(h, "Broken")  # nothing of it was loaded here
