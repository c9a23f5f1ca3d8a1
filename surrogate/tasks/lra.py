"""Long Range Arena tasks read from the standard files in a folder the user gives.

- listops: ``basic_{train,val,test}.tsv``; 16 tokens (digits, 4 operators, ``]``, end);
  length ≤ 2000; 10 classes.
- text: ``aclImdb/{train,test}/{pos,neg}/*.txt`` (IMDB); bytes (256); 4096; 2 classes.
- retrieval: ``new_aan_pairs.{train,eval,test}.tsv`` with label, id1, id2, text1, text2; bytes;
  two documents of 4000; 2 classes.
- image: CIFAR-10 python batches (``data_batch_1…5``, ``test_batch``) → grayscale; 16 grey
  bins; 1024; 10 classes.
- pathfinder: ``curv_contour_length_14/{imgs,metadata}`` at 32 px; 16 grey bins; 1024; 2.
- pathx: the same at 128 px; 8 grey bins; 16384; 2.

Token sequences are right-padded with −1, which the one-hot encoder maps to a zero vector.
Splits: ListOps/IMDB/AAN use their files (IMDB valid = 10 % of train, seeded); CIFAR-10 train =
first 90 % of the training batches, valid the last 10 %; Pathfinder a seeded random 80/10/10.
"""

from __future__ import annotations

import csv
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elmpipe.safe_pickle import SafeUnpickler  # numpy-only unpickling
from surrogate.tasks.shd import TaskDataError

PAD = -1


class TokenDataset(torch.utils.data.Dataset):
    """Pre-tokenised sequences; items are one-hot (length, vocab) tensors and a label.

    ``sequences`` holds token arrays here; subclasses keep what they read their items from
    (document pairs, image paths).
    """

    def __init__(self, sequences: list[Any], labels: list[int], vocab: int, length: int) -> None:
        self.sequences, self.labels, self.vocab, self.length = (
            sequences,
            np.asarray(labels),
            vocab,
            length,
        )

    def __len__(self) -> int:
        return len(self.labels)

    def label(self, i: int) -> int:
        return int(self.labels[i])

    def tokens(self, i: int) -> np.ndarray:
        out = np.full(self.length, PAD, dtype=np.int64)
        seq = self.sequences[i][: self.length]
        out[: len(seq)] = seq
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return one_hot(self.tokens(i), self.vocab), self.label(i)


class PairDataset(TokenDataset):
    """Two documents per item (AAN retrieval): (2, length, vocab)."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        a, b = self.sequences[i]

        def pad(tokens: np.ndarray) -> np.ndarray:
            tokens = tokens[: self.length]
            return np.pad(tokens, (0, self.length - len(tokens)), constant_values=PAD)

        return torch.stack([one_hot(pad(a), self.vocab), one_hot(pad(b), self.vocab)]), self.label(
            i
        )


def one_hot(tokens: np.ndarray, vocab: int) -> torch.Tensor:
    out = torch.zeros(len(tokens), vocab)
    valid = tokens >= 0
    out[torch.from_numpy(np.flatnonzero(valid)), torch.from_numpy(tokens[valid])] = 1.0
    return out


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8", errors="replace"), dtype=np.uint8).astype(np.int64)


def _split_indices(n: int, seed: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    a = int(fractions[0] * n)
    b = a + int(fractions[1] * n)
    return {"train": order[:a], "valid": order[a:b], "test": order[b:]}


# -- ListOps ----------------------------------------------------------------------------------


def listops(folder: Path, length: int | None):
    from surrogate.tasks.listops import SPLIT_FILES, VOCAB, read_split

    parts = []
    for split in ("train", "valid", "test"):
        rows = read_split(folder / SPLIT_FILES[split])
        if not rows:
            raise TaskDataError(f"{folder / SPLIT_FILES[split]} holds no expressions")
        limit = length or max(len(t) for t, _ in rows)
        parts.append(
            TokenDataset([np.array(t) for t, _ in rows], [y for _, y in rows], len(VOCAB), limit)
        )
    return (*parts, len(VOCAB), 10)


# -- Text (IMDB) -------------------------------------------------------------------------------


def _imdb(folder: Path, part: str) -> tuple[list[np.ndarray], list[int]]:
    root = folder / "aclImdb" / part
    if not root.is_dir():
        raise TaskDataError(
            f"IMDB folder not found: {root} (expected aclImdb/{{train,test}}/{{pos,neg}}/*.txt)"
        )
    sequences, labels = [], []
    for label, name in ((0, "neg"), (1, "pos")):
        files = sorted((root / name).glob("*.txt"))
        if not files:
            raise TaskDataError(f"no reviews in {root / name}")
        for f in files:
            sequences.append(_bytes(f.read_text(errors="replace")))
            labels.append(label)
    return sequences, labels


def text(folder: Path, length: int | None, seed: int):
    length = length or 4096
    train_seq, train_lab = _imdb(folder, "train")
    test_seq, test_lab = _imdb(folder, "test")
    order = np.random.default_rng(seed).permutation(len(train_lab))
    cut = int(0.9 * len(order))
    pick = lambda idx: ([train_seq[i] for i in idx], [train_lab[i] for i in idx])  # noqa: E731
    return (
        TokenDataset(*pick(order[:cut]), 256, length),
        TokenDataset(*pick(order[cut:]), 256, length),
        TokenDataset(test_seq, test_lab, 256, length),
        256,
        2,
    )


# -- Retrieval (AAN) ---------------------------------------------------------------------------


def _aan(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[int]]:
    if not path.exists():
        raise TaskDataError(f"AAN file not found: {path}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    pairs, labels = [], []
    with open(path, newline="", errors="replace") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if number == 1 and row and row[0].strip().lower() == "label":
                continue  # header
            if len(row) < 5:
                raise TaskDataError(
                    f"{path}, line {number}: {len(row)} columns; the retrieval task needs "
                    "label, id1, id2, text1, text2 (the ids-only release lacks the documents' text)"
                )
            try:
                label = int(float(row[0]))
            except ValueError:
                raise TaskDataError(f"{path}, line {number}: label {row[0]!r} is not 0/1") from None
            pairs.append((_bytes(row[3]), _bytes(row[4])))
            labels.append(label)
    return pairs, labels


def retrieval(folder: Path, length: int | None):
    length = length or 4000
    parts = []
    for split in ("train", "eval", "test"):
        pairs, labels = _aan(folder / f"new_aan_pairs.{split}.tsv")
        parts.append(PairDataset(pairs, labels, 256, length))
    return (*parts, 256, 2)


# -- Image (CIFAR-10) --------------------------------------------------------------------------


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise TaskDataError(f"CIFAR-10 batch not found: {path} (the 'python version' batches)")
    try:
        with open(path, "rb") as handle:
            batch = SafeUnpickler(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"])
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError) as exc:
        raise TaskDataError(f"{path} is not a CIFAR-10 python batch: {exc}") from exc
    grey = np.round(0.2989 * data[:, 0] + 0.5870 * data[:, 1] + 0.1140 * data[:, 2])
    return grey.astype(np.uint8).reshape(len(data), -1), labels


def grey_tokens(pixels: np.ndarray, bins: int) -> np.ndarray:
    return (pixels.astype(np.int64) * bins // 256).clip(0, bins - 1)


def image(folder: Path, bins: int = 16):
    root = folder / "cifar-10-batches-py" if (folder / "cifar-10-batches-py").is_dir() else folder
    batches = [_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    pixels = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    cut = int(0.9 * len(labels))
    test_pixels, test_labels = _cifar_batch(root / "test_batch")
    make = lambda p, y: TokenDataset(list(grey_tokens(p, bins)), list(y), bins, 1024)  # noqa: E731
    return (
        make(pixels[:cut], labels[:cut]),
        make(pixels[cut:], labels[cut:]),
        make(test_pixels, test_labels),
        bins,
        10,
    )


# -- Pathfinder / Path-X -----------------------------------------------------------------------


def read_pathfinder(
    folder: Path, difficulty: str = "curv_contour_length_14"
) -> tuple[list[Path], list[int]]:
    root = folder / difficulty
    meta = root / "metadata"
    if not meta.is_dir():
        raise TaskDataError(
            f"Pathfinder metadata not found: {meta} (expected {difficulty}/metadata/*.npy)"
        )
    paths, labels = [], []
    for file in sorted(
        meta.glob("*.npy"), key=lambda p: int(p.stem) if p.stem.isdigit() else p.stem
    ):
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 4:
                raise TaskDataError(f"{file}, line {number}: expected 'dir file index label …'")
            image_path = root / fields[0] / fields[1]
            if not image_path.exists():
                raise TaskDataError(f"{file}, line {number}: image {image_path} is missing")
            paths.append(image_path)
            labels.append(int(fields[3]))
    if not paths:
        raise TaskDataError(f"no Pathfinder images listed in {meta}")
    return paths, labels


class ImageFiles(TokenDataset):
    """Grayscale PNGs read on demand, binned to ``vocab`` grey levels."""

    def __init__(self, paths: list[Path], labels: list[int], vocab: int, length: int) -> None:
        super().__init__(paths, labels, vocab, length)

    def tokens(self, i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.sequences[i]) as picture:
            pixels = np.asarray(picture.convert("L"), dtype=np.uint8).ravel()
        if pixels.size != self.length:
            raise TaskDataError(
                f"{self.sequences[i]}: {pixels.size} pixels, expected {self.length}"
            )
        return grey_tokens(pixels, self.vocab)


def pathfinder(folder: Path, seed: int, size: int = 32, bins: int = 16):
    paths, labels = read_pathfinder(folder)
    parts = _split_indices(len(paths), seed)

    def make(idx: np.ndarray) -> ImageFiles:
        return ImageFiles([paths[i] for i in idx], [labels[i] for i in idx], bins, size * size)

    return make(parts["train"]), make(parts["valid"]), make(parts["test"]), bins, 2


def task_datasets(task: str, folder: str | Path, length: int | None, seed: int):
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskDataError(f"data folder not found: {folder}")
    if task == "listops":
        return listops(folder, length)
    if task == "text":
        return text(folder, length, seed)
    if task == "retrieval":
        return retrieval(folder, length)
    if task == "image":
        return image(folder)
    if task == "pathfinder":
        return pathfinder(folder, seed)
    if task == "pathx":
        return pathfinder(folder, seed, size=128, bins=8)
    raise TaskDataError(f"unknown task {task!r}")
