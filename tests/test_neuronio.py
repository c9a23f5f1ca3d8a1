"""NeuronIO pickle files: safe loading, import into our schema, export from it, round trip."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from elmpipe.dataset import (
    Dataset,
    DatasetError,
    SimulationRecord,
    prepare_split,
    spike_labels,
    write_block,
)
from elmpipe.dataset.schema import DATA_ARRAYS
from pipelines.cluster import ClusterConfig
from pipelines.neuronio_files import export_neuronio, import_neuronio
from simulations.neuronio import NeuronIOFormatError, load_pickle
from tests.test_store import make_spec

HERE = ClusterConfig(kind="in-process")
N_SEG, T = 5, 100


def neuronio_experiment(n_sims: int, seed: int, dendrites: bool = True, T: int = T) -> dict:
    """A small file in the original layout (float16 voltages, dicts of int64 spike times)."""
    rng = np.random.default_rng(seed)
    sims = []
    for _ in range(n_sims):
        exc = {
            np.int64(s): [np.int64(t) for t in sorted(rng.choice(T, 4, replace=False))]
            for s in range(0, N_SEG, 2)
        }
        inh = {
            np.int64(s): [np.int64(t) for t in sorted(rng.choice(T, 3, replace=False))]
            for s in range(1, N_SEG, 2)
        }
        exc[np.int64(0)].append(exc[np.int64(0)][0])  # a repeated spike in one bin
        sim = {
            "recordingTimeHighRes": np.arange(T * 8, dtype=np.float32) / 8,
            "somaVoltageHighRes": rng.normal(-70, 4, T * 8).astype(np.float16),
            "nexusVoltageHighRes": rng.normal(-65, 4, T * 8).astype(np.float16),
            "recordingTimeLowRes": np.arange(T, dtype=np.float32),
            "somaVoltageLowRes": rng.normal(-70, 4, T).astype(np.float16),
            "nexusVoltageLowRes": rng.normal(-65, 4, T).astype(np.float16),
            "exInputSpikeTimes": exc,
            "inhInputSpikeTimes": inh,
            "outputSpikeTimes": np.sort(rng.uniform(1, T - 1, 3)).astype(np.float16),
        }
        if dendrites:
            sim["dendriticVoltagesLowRes"] = rng.normal(-70, 4, (N_SEG, T)).astype(np.float16)
        sims.append(sim)
    params = {
        "randomSeed": seed,
        "numSimulations": n_sims,
        "totalSimDurationInSec": T / 1000,
        "collectAndSaveDVTs": dendrites,
        "allSegmentsType": ["basal", "basal", "apical", "apical", "apical"],
        "allSegmentsLength": np.array([10.0, 20, 30, 15, 25]),
        "allSegments_DistFromSoma": np.array([20.0, 40, 60, 100, 140]),
        "allSegments_SectionInd": np.array([0, 0, 1, 1, 2]),
    }
    return {"Params": params, "Results": {"listOfSingleSimulationDicts": sims}}


def write_python2_style(path, experiment) -> None:
    """Protocol 2 with the numpy 1.x module names that Python 2 NeuronIO files reference."""
    data = pickle.dumps(experiment, protocol=2)
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


@pytest.fixture
def neuronio_folder(tmp_path):
    folder = tmp_path / "neuronio"
    folder.mkdir()
    for i, seed in enumerate((1110264, 100523)):
        write_python2_style(folder / f"file_{i}_sim__{seed}.p", neuronio_experiment(3, seed))
    return folder


def test_import_converts_the_original_layout(neuronio_folder, tmp_path):
    out = tmp_path / "imported.zarr"
    n = import_neuronio(
        neuronio_folder, out, "test", with_dendrites=True, cluster=HERE, progress=False
    )
    assert n == 6
    data = Dataset(out)
    assert data.split("test").complete_mask.all()
    files = sorted(neuronio_folder.iterdir())
    original = load_pickle(files[1])["Results"]["listOfSingleSimulationDicts"][2]
    sim = data.split("test").simulation(3 + 2)
    # inputs: excitatory row s, inhibitory row N_SEG + s, one per 1 ms bin
    for segment, times in original["exInputSpikeTimes"].items():
        assert np.flatnonzero(sim["inputs"][:, segment]).tolist() == sorted(
            set(int(t) for t in times)
        )
    for segment, times in original["inhInputSpikeTimes"].items():
        assert np.flatnonzero(sim["inputs"][:, N_SEG + segment]).tolist() == sorted(
            int(t) for t in times
        )
    assert sim["inputs"].sum() == sum(
        len(set(v)) for v in original["exInputSpikeTimes"].values()
    ) + sum(len(v) for v in original["inhInputSpikeTimes"].values())
    np.testing.assert_array_equal(sim["soma_v"], original["somaVoltageLowRes"].astype(np.float32))
    np.testing.assert_array_equal(
        sim["dend_v"], original["dendriticVoltagesLowRes"].T.astype(np.float32)
    )
    t16 = original["outputSpikeTimes"]
    np.testing.assert_array_equal(sim["spike_times"], t16.astype(np.float64))
    assert np.flatnonzero(sim["spikes"]).tolist() == sorted(
        {int(t - 0.5) for t in t16.astype(float)}
    )
    assert data.attrs["protocol"]["kind"] == "neuronio-import"
    assert data.attrs["cell"]["segment_table"]["region"][0] == "basal"


def test_files_of_different_sizes(tmp_path):
    folder = tmp_path / "sizes"
    folder.mkdir()
    write_python2_style(folder / "a_sim__1.p", neuronio_experiment(3, 1))
    write_python2_style(folder / "b_sim__2.p", neuronio_experiment(1, 2))
    out = tmp_path / "sizes.zarr"
    assert import_neuronio(folder, out, "test", cluster=HERE, progress=False) == 4
    assert Dataset(out).split("test").complete_mask.tolist() == [True] * 4
    assert Dataset(out).attrs["protocol"]["files"] == [["a_sim__1.p", 3], ["b_sim__2.p", 1]]


def test_import_in_parallel_with_dask(neuronio_folder, tmp_path):
    out = tmp_path / "parallel.zarr"
    import_neuronio(
        neuronio_folder, out, "test", cluster=ClusterConfig(kind="local", workers=2), progress=False
    )
    reference = tmp_path / "serial.zarr"
    import_neuronio(neuronio_folder, reference, "test", cluster=HERE, progress=False)
    for name in DATA_ARRAYS:
        a = Dataset(out).split("test").group[name][:]
        b = Dataset(reference).split("test").group[name][:]
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name


LONG = 1500  # ms: not whole seconds, so an export holds the first 1000 ms


def long_record(k: int, n_spikes: int = 4) -> SimulationRecord:
    rng = np.random.default_rng(k)
    times = np.sort(rng.uniform(1, LONG - 1, n_spikes))
    return SimulationRecord(
        inputs=rng.random((LONG, 2 * N_SEG)) < 0.02,
        soma_v=rng.normal(-70, 3, LONG).astype(np.float32),
        nexus_v=rng.normal(-65, 3, LONG).astype(np.float32),
        spikes=spike_labels(times, LONG),
        spike_times=times,
        interval_ms=50,
        smoothing_ms=60,
        attempts=1,
    )


@pytest.fixture
def exported(tmp_path):
    """Three simulations of 1.5 s in our schema, exported as NeuronIO files (2 per file)."""
    store = tmp_path / "ours.zarr"
    spec = make_spec(simulation={"duration_ms": float(LONG), "record_dendrites": False})
    prepare_split(store, spec, "test", 3)
    write_block(store, "test", 0, [long_record(0), long_record(1), long_record(2, n_spikes=0)])
    folder = tmp_path / "exported"
    export = export_neuronio(store, "test", folder, sims_per_file=2, cluster=HERE, progress=False)
    assert (export.simulated_ms, export.exported_ms) == (LONG, 1000)
    return store, folder, export.names


def test_export_then_import_round_trip(exported, tmp_path):
    store, folder, names = exported
    assert len(names) == 2
    assert all(name.startswith("L5PC_sim__Output_spikes_") for name in names)
    assert all("simXsec_" in name and name.split("simXsec_")[1].split("_")[0] in ("1x1", "2x1")
               for name in names)  # fmt: skip
    experiment = load_pickle(folder / sorted(names)[0])
    sim = experiment["Results"]["listOfSingleSimulationDicts"][0]
    assert sim["somaVoltageLowRes"].dtype == np.float16
    assert sim["somaVoltageHighRes"].shape == (8 * 1000,)
    assert experiment["Params"]["numSimulations"] in (1, 2)
    assert len(experiment["Params"]["allSegmentsType"]) == 5
    back = tmp_path / "back.zarr"
    import_neuronio(folder, back, "test", cluster=HERE, progress=False)
    ours, theirs = Dataset(store), Dataset(back)
    assert theirs.split("test").n_time == 1000
    # files are sorted by name, so match simulations by their inputs
    originals = [ours.split("test").simulation(k) for k in range(3)]
    for k in range(3):
        sim = theirs.split("test").simulation(k)
        match = [o for o in originals if np.array_equal(o["inputs"][:1000], sim["inputs"])]
        assert len(match) == 1
        np.testing.assert_allclose(sim["soma_v"], match[0]["soma_v"][:1000], atol=0.04)
        early = match[0]["spike_times"][match[0]["spike_times"] < 1000]
        np.testing.assert_allclose(sim["spike_times"], early, atol=0.5)  # float16


def read_like_neuronio_code(path):
    """What code written for NeuronIO does with a file: plain pickle.load, array sizes from
    Params by integer arithmetic, inputs, spike labels and soma from the documented keys
    (neuronio-protocol.md, "minimal converter contract")."""
    with open(path, "rb") as handle:
        experiment = pickle.load(handle, encoding="latin1")
    params = experiment["Params"]
    sims = experiment["Results"]["listOfSingleSimulationDicts"]
    n_segments = len(params["allSegmentsType"])
    duration_ms = params["totalSimDurationInSec"] * 1000
    inputs = np.zeros((2 * n_segments, duration_ms, len(sims)), dtype=bool)
    labels = np.zeros((duration_ms, len(sims)))
    soma = np.zeros((duration_ms, len(sims)))
    for k, sim in enumerate(sims):
        for segment, times in sim["exInputSpikeTimes"].items():
            inputs[segment, times, k] = True
        for segment, times in sim["inhInputSpikeTimes"].items():
            inputs[n_segments + segment, times, k] = True
        labels[(sim["outputSpikeTimes"].astype(float) - 0.5).astype(int), k] = 1
        soma[:, k] = sim["somaVoltageLowRes"]
    return params, inputs, labels, soma


def test_exported_files_read_as_neuronio_code_reads_them(exported):
    store, folder, names = exported
    data = Dataset(store).split("test")
    seen = 0
    for name in sorted(names):
        params, inputs, labels, soma = read_like_neuronio_code(folder / name)
        assert type(params["totalSimDurationInSec"]) is int  # NeuronIO writes 6, not 6.0
        assert type(params["numSimulations"]) is int and type(params["randomSeed"]) is int
        assert all(type(v) is int for v in params["numOutputSpikesPerSim"])
        for k in range(inputs.shape[2]):
            match = [
                i
                for i in range(3)
                if np.array_equal(data.simulation(i)["inputs"][:1000].T, inputs[:, :, k])
            ]
            assert len(match) == 1
            original = data.simulation(match[0])
            np.testing.assert_array_equal(labels[:, k].astype(bool), original["spikes"][:1000])
            np.testing.assert_allclose(soma[:, k], original["soma_v"][:1000], atol=0.04)
            seen += 1
    assert seen == 3


def test_python3_protocol2_files_import(tmp_path):
    """Python 3 writes an empty array's buffer in protocol 2 as __builtin__.bytes(): a file with a
    simulation without output spikes must import, and nothing but that constructor is admitted."""
    experiment = neuronio_experiment(2, 7)
    sims = experiment["Results"]["listOfSingleSimulationDicts"]
    sims[1]["outputSpikeTimes"] = np.array([], dtype=np.float16)
    folder = tmp_path / "py3"
    folder.mkdir()
    data = pickle.dumps(experiment, protocol=2)
    assert b"__builtin__\nbytes" in data
    (folder / "py3_sim__7.p").write_bytes(data)
    import_neuronio(folder, tmp_path / "py3.zarr", "test", cluster=HERE, progress=False)
    imported = Dataset(tmp_path / "py3.zarr").split("test")
    assert imported.spike_counts().tolist() == [3, 0]
    assert not imported.simulation(1)["spikes"].any()


def test_crafted_pickle_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "evil_sim__1.p").write_bytes(payload)
    with pytest.raises(NeuronIOFormatError, match=r"refusing to load os\.system"):
        load_pickle(folder / "evil_sim__1.p")
    with pytest.raises(NeuronIOFormatError, match="refusing"):
        import_neuronio(folder, tmp_path / "x.zarr", "test", cluster=HERE, progress=False)
    assert not marker.exists()
    # a builtins trick is refused as well
    trick = pickle.dumps(eval)  # references builtins.eval
    (folder / "evil_sim__1.p").write_bytes(trick)
    with pytest.raises(NeuronIOFormatError, match="builtins"):
        load_pickle(folder / "evil_sim__1.p")


def test_malformed_files(tmp_path):
    not_neuronio = tmp_path / "a.p"
    not_neuronio.write_bytes(pickle.dumps({"hello": 1}, protocol=2))
    with pytest.raises(NeuronIOFormatError, match="not a NeuronIO file"):
        load_pickle(not_neuronio)
    truncated = tmp_path / "b.p"
    truncated.write_bytes(pickle.dumps(neuronio_experiment(1, 0), protocol=2)[:500])
    with pytest.raises(NeuronIOFormatError, match="not a readable pickle"):
        load_pickle(truncated)


def test_inconsistent_files_and_empty_folders(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_python2_style(folder / "a_sim__1.p", neuronio_experiment(3, 1))
    write_python2_style(folder / "b_sim__2.p", neuronio_experiment(2, 2, T=50))
    with pytest.raises(NeuronIOFormatError, match=r"b_sim__2\.p: simulations of 50 ms"):
        import_neuronio(folder, tmp_path / "m.zarr", "test", cluster=HERE, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no NeuronIO pickle files"):
        import_neuronio(empty, tmp_path / "e.zarr", "test", cluster=HERE, progress=False)
    no_dvt = tmp_path / "nodvt"
    no_dvt.mkdir()
    write_python2_style(no_dvt / "a_sim__1.p", neuronio_experiment(1, 1, dendrites=False))
    with pytest.raises(NeuronIOFormatError, match="no dendritic"):
        import_neuronio(
            no_dvt, tmp_path / "d.zarr", "test", with_dendrites=True, cluster=HERE, progress=False
        )


def test_export_refuses_simulations_shorter_than_a_second(tmp_path):
    from tests.test_store import record

    store = tmp_path / "short.zarr"
    prepare_split(store, make_spec(), "test", 1)  # 40 ms simulations
    write_block(store, "test", 0, [record(0)])
    with pytest.raises(NeuronIOFormatError, match="shorter than 1 s"):
        export_neuronio(store, "test", tmp_path / "out", cluster=HERE, progress=False)
    assert not any((tmp_path / "out").glob("*.p"))


def _edit(experiment: dict, how: str) -> dict:
    sim = experiment["Results"]["listOfSingleSimulationDicts"][0]
    params = experiment["Params"]
    if how == "nexus_len":
        sim["nexusVoltageLowRes"] = sim["nexusVoltageLowRes"][:-3]
    elif how == "neg_segment":
        sim["exInputSpikeTimes"][np.int64(-1)] = [np.int64(3)]
    elif how == "big_segment":
        sim["inhInputSpikeTimes"][np.int64(5000)] = [np.int64(3)]
    elif how == "str_segment":
        sim["exInputSpikeTimes"]["abc"] = [np.int64(3)]
    elif how == "segtype_short":
        params["allSegmentsType"] = params["allSegmentsType"][:2]
    elif how == "nan_output":
        sim["outputSpikeTimes"] = np.array([np.nan, -50, np.inf], dtype=np.float16)
    elif how == "soma_nan":
        sim["somaVoltageLowRes"][10] = np.nan
    elif how == "duration_str":
        params["totalSimDurationInSec"] = "abc"
    elif how == "inputs_list":
        sim["exInputSpikeTimes"] = [[1, 2]]
    return experiment


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("nexus_len", "nexusVoltageLowRes has shape (97,), expected (100,)"),
        ("neg_segment", "input segment -1 is not one of the file's 5 segments"),
        ("big_segment", "input segment 5000 is not one of the file's 5 segments"),
        ("str_segment", "input segment 'abc' is not a number"),
        ("segtype_short", "is not one of the file's 2 segments"),
        ("nan_output", "outputSpikeTimes holds values outside 0 … 100 ms"),
        ("soma_nan", "somaVoltageLowRes holds nan or inf"),
        ("duration_str", "totalSimDurationInSec or allSegmentsType is malformed"),
        ("inputs_list", "exInputSpikeTimes is a list, not a dict"),
    ],
)
def test_malformed_simulations_are_refused_naming_file_and_field(tmp_path, how, says):
    """The NeuronIO rows of bad-input-cases.md: out-of-range data was stored (an input on
    segment −1 landed on an inhibitory channel; NaN spike times were kept) or crashed."""
    folder = tmp_path / "nio"
    folder.mkdir()
    write_python2_style(folder / "a_sim__1.p", _edit(neuronio_experiment(2, 1), how))
    with pytest.raises(NeuronIOFormatError, match=r"a_sim__1\.p") as err:
        import_neuronio(folder, tmp_path / "m.zarr", "test", cluster=HERE, progress=False)
    assert says in str(err.value)
    assert (
        not (tmp_path / "m.zarr" / "test").exists()
        or not Dataset(tmp_path / "m.zarr").split("test").complete.size
    )


def test_exact_spike_times_keep_their_precision(tmp_path):
    """A file that stores exact output times (not NeuronIO's float16) keeps them: casting them
    to float16 moved a released model's AUC from 0.9980 to 0.9975 on such a file."""
    experiment = neuronio_experiment(2, 3)
    exact = []
    for sim in experiment["Results"]["listOfSingleSimulationDicts"]:
        sim["outputSpikeTimes"] = np.array([12.3456789, 57.0001], dtype=np.float64)
        exact.append(sim["outputSpikeTimes"])
    folder = tmp_path / "nio"
    folder.mkdir()
    write_python2_style(folder / "a_sim__1.p", experiment)
    import_neuronio(folder, tmp_path / "m.zarr", "test", cluster=HERE, progress=False)
    data = Dataset(tmp_path / "m.zarr")
    assert not data.spike_times_are_float16
    assert data.protocol["spike_time_precision"] == "exact"
    stored = data.split("test").simulation(0)["spike_times"]
    np.testing.assert_array_equal(stored, exact[0])
