"""Secondary benchmarks: file formats, generators read back by their loaders, SHD-Adding labels,
and a few training steps on every task type."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from surrogate.checkpoints import load_model
from surrogate.tasks import listops, lra, pathfinder, shd
from surrogate.tasks.classification import SequenceClassification, TaskTrainConfig
from surrogate.tasks.shd import TaskDataError
from surrogate.train import TrainingError, train

# -- SHD ----------------------------------------------------------------------------------------


def test_binning_counts_and_drops_late_spikes():
    times = np.array([0.0, 0.0004, 0.0099, 0.01, 0.5, 0.9999, 1.0, 1.2])
    units = np.array([3, 3, 3, 4, 699, 0, 5, 6])
    x = shd.bin_spikes(times, units, bin_ms=10)
    assert x.shape == (100, 700)
    assert x[0, 3] == 3  # duplicates summed into a count
    assert x[1, 4] == 1 and x[50, 699] == 1 and x[99, 0] == 1
    assert x.sum() == 6  # the spikes at 1.0 s and later are dropped
    assert shd.bin_spikes(times, units, bin_ms=2).shape == (500, 700)


@pytest.fixture(scope="module")
def shd_folder(tmp_path_factory):
    return shd.write_synthetic_shd(tmp_path_factory.mktemp("shd"), n_train=60, n_test=20, seed=3)


def test_synthetic_shd_has_the_standard_layout(shd_folder):
    import h5py

    with h5py.File(shd_folder / "shd_train.h5") as f:
        assert set(f) >= {"spikes", "labels", "extra"}
        assert set(f["extra"]) >= {"keys", "speaker"}
        assert f["spikes/times"][0].dtype == np.float16
        assert max(t.max() for t in f["spikes/times"][:]) >= 1.0  # some spikes past 1 s
    digits = shd.load_digits(shd_folder / "shd_train.h5")
    assert len(digits) == 60 and digits.labels.max() <= 19
    train, valid = shd.SHDDataset(shd_folder, "train"), shd.SHDDataset(shd_folder, "valid")
    assert len(train) + len(valid) == 60 and len(valid) > 0
    assert not set(train.index) & set(valid.index)


def test_shd_adding_labels_and_fixed_evaluation_pairs(shd_folder):
    test = shd.SHDAddingDataset(shd_folder, "test", bin_ms=10, size=50, seed=2)
    x, y = test[7]
    a, b = test.pair(7)
    assert x.shape == (200, 700)
    assert y == test.base.label(a) % 10 + test.base.label(b) % 10 and 0 <= y <= 18
    assert torch.equal(x[:100], test.base[a][0]) and torch.equal(x[100:], test.base[b][0])
    again = shd.SHDAddingDataset(shd_folder, "test", bin_ms=10, size=50, seed=2)
    assert [again.pair(i) for i in range(50)] == [test.pair(i) for i in range(50)]
    train = shd.SHDAddingDataset(shd_folder, "train", bin_ms=10, size=50)
    first = [train.pair(i) for i in range(50)]
    train.set_epoch(1)
    assert first != [train.pair(i) for i in range(50)]  # new training pairs every epoch
    assert all(a < len(test.base) for a, _ in (test.pair(i) for i in range(50)))  # test digits only


def test_broken_shd_files(tmp_path):
    with pytest.raises(TaskDataError, match=r"shd_train\.h5 not found"):
        shd.SHDDataset(tmp_path, "train")
    (tmp_path / "shd_train.h5").write_bytes(b"not hdf5")
    with pytest.raises(TaskDataError, match="not an SHD file"):
        shd.SHDDataset(tmp_path, "train")


# -- ListOps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("[SM 5 8 ]", 3),
        ("[MED 1 2 3 9 ]", 2),
        ("[MIN 4 [MAX 1 7 ] ]", 4),
        ("[MAX 2 [SM 9 9 ] 3 ]", 8),
    ],
)
def test_listops_semantics(expression, value):
    def parse(words):
        word = words.pop(0)
        if word in listops.OPERATORS:
            children = []
            while words[0] != "]":
                children.append(parse(words))
            words.pop(0)
            return (word, children)
        return int(word)

    assert listops.evaluate(parse(expression.split())) == value


def test_listops_generator_rules_and_round_trip(tmp_path):
    options = {"max_depth": 6, "max_args": 5, "min_length": 20, "max_length": 120}
    rows = listops.generate(300, seed=4, **options)
    assert len({s for s, _ in rows}) == 300  # duplicates removed
    assert all(20 < len(s.split()) < 120 for s, _ in rows)
    assert rows == listops.generate(300, seed=4, **options)  # seeded
    folder = listops.write_dataset(
        tmp_path, {"train": 30, "valid": 5, "test": 5}, seed=1, **options
    )
    header = (folder / "basic_train.tsv").read_text().splitlines()[0]
    assert header == "Source\tTarget"
    train, valid, test, vocab, classes = lra.task_datasets("listops", folder, None, 0)
    assert (len(train), len(valid), len(test), vocab, classes) == (30, 5, 5, 16, 10)
    x, y = train[0]
    source, target = (folder / "basic_train.tsv").read_text().splitlines()[1].split("\t")
    assert y == int(target)
    assert x.sum() == len(source.split()) + 1  # one-hot tokens plus the end token


def test_listops_loader_errors(tmp_path):
    (tmp_path / "basic_train.tsv").write_text("expression\tvalue\n[SM 1 2 ]\t3\n")
    with pytest.raises(TaskDataError, match="header"):
        listops.read_split(tmp_path / "basic_train.tsv")
    (tmp_path / "basic_train.tsv").write_text("Source\tTarget\n[SUM 1 2 ]\t3\n")
    with pytest.raises(TaskDataError, match="unknown ListOps tokens"):
        listops.read_split(tmp_path / "basic_train.tsv")


# -- Pathfinder ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pathfinder_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pf")
    pathfinder.write_dataset(root, 30, seed=5, per_folder=20)
    return root


def test_pathfinder_layout_and_loader(pathfinder_folder):
    folder = pathfinder_folder / "curv_contour_length_14"
    assert sorted(p.name for p in (folder / "metadata").iterdir()) == ["0.npy", "1.npy"]
    line = (folder / "metadata" / "0.npy").read_text().splitlines()[0].split()
    assert line[0] == "imgs/0" and line[1] == "sample_0.png" and line[3] in ("0", "1")
    train, valid, test, vocab, classes = lra.task_datasets("pathfinder", pathfinder_folder, None, 0)
    assert len(train) + len(valid) + len(test) == 30 and (vocab, classes) == (16, 2)
    x, _ = train[0]
    assert x.shape == (1024, 16) and torch.all(x.sum(-1) == 1)
    labels = [train.label(i) for i in range(len(train))]
    assert 0 < sum(labels) < len(labels)  # both classes


def test_pathfinder_positive_and_negative_differ_in_marker_placement():
    style = pathfinder.PathfinderStyle()
    pos = pathfinder.draw_sample(np.random.default_rng(1), 14, True, style)
    neg = pathfinder.draw_sample(np.random.default_rng(1), 14, False, style)
    assert pos.shape == (32, 32) and pos.dtype == np.uint8
    assert (pos == 255).sum() > 0 and not np.array_equal(pos, neg)


def test_pathfinder_missing_image(pathfinder_folder, tmp_path):
    import shutil

    copy = tmp_path / "pf"
    shutil.copytree(pathfinder_folder, copy)
    (copy / "curv_contour_length_14" / "imgs" / "0" / "sample_3.png").unlink()
    with pytest.raises(TaskDataError, match=r"sample_3\.png is missing"):
        lra.task_datasets("pathfinder", copy, None, 0)


# -- Text, Retrieval, Image (tiny stand-ins in the real formats) --------------------------------


def write_imdb(root: Path) -> Path:
    for part in ("train", "test"):
        for label, words in (("pos", "great wonderful film"), ("neg", "boring awful film")):
            folder = root / "aclImdb" / part / label
            folder.mkdir(parents=True)
            for i in range(4):
                (folder / f"{i}_7.txt").write_text(f"{words} {i} é")
    return root


def test_text_loader(tmp_path):
    train, valid, test, vocab, classes = lra.task_datasets("text", write_imdb(tmp_path), 64, 0)
    assert (len(train) + len(valid), len(test), vocab, classes) == (8, 8, 256, 2)
    x, _ = test[0]
    assert x.shape == (64, 256)
    text = "boring awful film 0 é".encode()
    assert x.sum() == len(text) and x[0, text[0]] == 1  # bytes, UTF-8


def test_retrieval_loader_and_ids_only_release(tmp_path):
    rows = ["label\tid1\tid2\ttext1\ttext2"] + [
        f"{i % 2}\tp{i}\tq{i}\tpaper {i}\tcited {i}" for i in range(6)
    ]
    for split in ("train", "eval", "test"):
        (tmp_path / f"new_aan_pairs.{split}.tsv").write_text("\n".join(rows) + "\n")
    train, _, _, vocab, classes = lra.task_datasets("retrieval", tmp_path, 32, 0)
    assert (vocab, classes) == (256, 2)
    x, y = train[3]
    assert x.shape == (2, 32, 256) and y == 1
    (tmp_path / "new_aan_pairs.train.tsv").write_text("1\tp1\tq1\n0\tp2\tq2\n")
    with pytest.raises(TaskDataError, match="ids-only release"):
        lra.task_datasets("retrieval", tmp_path, 32, 0)


def write_cifar(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
            b"labels": list(range(10)),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def test_image_loader_greyscales_and_bins(tmp_path):
    root = write_cifar(tmp_path)
    train, valid, test, vocab, classes = lra.task_datasets("image", root, None, 0)
    assert (len(train), len(valid), len(test), vocab, classes) == (45, 5, 10, 16, 10)
    raw = pickle.loads((root / "cifar-10-batches-py" / "test_batch").read_bytes())[b"data"][0]
    r, g, b = raw[0], raw[1024], raw[2048]
    grey = round(0.2989 * r + 0.5870 * g + 0.1140 * b)
    x, _ = test[0]
    assert x.shape == (1024, 16) and x[0, grey * 16 // 256] == 1


# -- training: a few steps per task type --------------------------------------------------------


@pytest.fixture(scope="module")
def task_data(tmp_path_factory, shd_folder, pathfinder_folder):
    root = tmp_path_factory.mktemp("tasks")
    lo = listops.write_dataset(
        root / "listops",
        {"train": 16, "valid": 4, "test": 4},
        seed=0,
        max_depth=4,
        max_args=4,
        min_length=8,
        max_length=60,
    )
    return {
        "shd": shd_folder,
        "shd-adding": shd_folder,
        "listops": lo,
        "pathfinder": pathfinder_folder,
        "text": write_imdb(root / "imdb"),
        "image": write_cifar(root / "cifar"),
    }


def fit_task(config: TaskTrainConfig, folder, out, **options):
    return train(SequenceClassification(config, folder), out, **options)


@pytest.mark.parametrize(
    ("task", "model", "extra"),
    [
        (
            "shd",
            {"family": "elm", "num_memory": 8, "num_branch": None, "routing": "none"},
            {"bin_ms": 20},
        ),
        (
            "shd",
            {
                "family": "elm",
                "num_memory": 8,
                "num_branch": 20,
                "num_synapse_per_branch": 5,
                "routing": "random",
            },
            {"bin_ms": 20},
        ),
        ("shd-adding", {"family": "lstm", "hidden": 8}, {"bin_ms": 20, "adding_pairs": 8}),
        ("listops", {"family": "elm", "num_memory": 6, "num_branch": None, "routing": "none"}, {}),
        (
            "pathfinder",
            {"family": "elm", "num_memory": 6, "num_branch": None, "routing": "none"},
            {},
        ),
        ("text", {"family": "lstm", "hidden": 6}, {"max_length": 40}),
        ("image", {"family": "elm", "num_memory": 6, "num_branch": None, "routing": "none"}, {}),
    ],
)
def test_a_few_training_steps(task, model, extra, task_data, tmp_path):
    config = TaskTrainConfig(
        task=task,
        model=model,
        batch_size=2,
        epochs=2,
        batches_per_epoch=3,
        eval_batches=2,
        learning_rate=1e-3,
        **extra,
    )
    result = fit_task(config, task_data[task], tmp_path / "run", progress=False).summary
    assert 0 <= result["test_accuracy"] <= 1 and result["parameters"] > 0
    assert result["epochs"] == 2 and (tmp_path / "run" / "last.pt").exists()
    # the run's checkpoints load like any model's, and give the logits of the task's classes
    model = load_model(tmp_path / "run" / "best.pt")
    x, _ = SequenceClassification(config, task_data[task]).test[0]
    with torch.no_grad():
        assert model(x[None].float()).shape == (1, result["classes"])
    # resuming checks the config, whatever the task
    with pytest.raises(TrainingError, match="different training config"):
        fit_task(
            config.model_copy(update={"learning_rate": 5e-3}),
            task_data[task],
            tmp_path / "run",
            resume=True,
            progress=False,
        )
    again = fit_task(config, task_data[task], tmp_path / "run", resume=True, progress=False)
    assert again.epochs_run == 0 and again.summary["epochs"] == 2


def test_retrieval_two_tower_trains(tmp_path):
    rows = [f"{i % 2}\tp{i}\tq{i}\t{'aa' * (i + 1)}\t{'ab' * (i + 1)}" for i in range(8)]
    for split in ("train", "eval", "test"):
        (tmp_path / f"new_aan_pairs.{split}.tsv").write_text("\n".join(rows) + "\n")
    config = TaskTrainConfig(
        task="retrieval",
        model={"family": "elm", "num_memory": 4, "num_branch": None, "routing": "none"},
        max_length=16,
        batch_size=2,
        epochs=1,
        batches_per_epoch=2,
        eval_batches=1,
    )
    result = fit_task(config, tmp_path, tmp_path / "run", progress=False).summary
    assert result["classes"] == 2
    model = load_model(tmp_path / "run" / "last.pt")
    assert model.config.readout == "two-tower"


def test_shipped_task_configs_are_valid():
    from pipelines.config import load_config
    from surrogate.tasks.classification import classifier_config
    from surrogate.tasks.configs import SHIPPED as folder

    names = sorted(p.name for p in folder.glob("*.yaml"))
    assert {"shd.yaml", "shd-adding.yaml", "listops.yaml", "pathfinder.yaml", "pathx.yaml"} <= set(
        names
    )
    for path in folder.glob("*.yaml"):
        config = load_config(path, TaskTrainConfig)  # the loader every command uses
        classifier_config(config, 16, 2)  # hyper-parameters valid for some input size


def test_task_configs_ship_with_the_package_and_are_found_by_name(tmp_path, monkeypatch):
    """Found wherever the command runs (they lived in configs/tasks of a checkout before)."""
    from elmpipe.errors import ConfigError
    from surrogate.tasks.configs import SHIPPED, shipped_task_config, task_config

    monkeypatch.chdir(tmp_path)  # not the checkout's top folder
    assert task_config("shd-adding-cpu") == SHIPPED / "shd-adding-cpu.yaml"
    assert task_config("shd-adding-cpu.yaml") == SHIPPED / "shd-adding-cpu.yaml"
    mine = tmp_path / "mine.yaml"
    mine.write_text("epochs: 1\n")
    assert task_config(str(mine)) == mine
    assert shipped_task_config("listops") == SHIPPED / "listops.yaml"
    assert shipped_task_config("no-such-task") is None
    with pytest.raises(ConfigError, match=r"shipped: .*shd-adding-cpu"):
        task_config("no-such-config")
