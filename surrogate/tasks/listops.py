"""ListOps: nested list operations on digits (LRA), generated offline and read from TSV.

Expressions are trees of ``[MIN``, ``[MAX``, ``[MED`` (median, then int) and ``[SM`` (sum mod 10)
over digits 0–9, closed by ``]``. Growth: below the maximum depth a node is a leaf with
probability 0.75, else an operator with randint(2, max_args) children; at the maximum depth every
node is a leaf. Length = leaves + 2 per operator; LRA keeps 500 < length < 2000. Duplicates are
removed; the generator is seeded, so it matches LRA's statistics, not its files.
Files: ``basic_{train,val,test}.tsv`` with the header ``Source<TAB>Target``.
"""

from __future__ import annotations

import csv
import random
import statistics
from pathlib import Path

from elmpipe.errors import InputError
from elmpipe.outputs import atomic_write

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
VOCAB = ("<eos>", *(str(d) for d in range(10)), *OPERATORS, "]")
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
SPLIT_FILES = {"train": "basic_train.tsv", "valid": "basic_val.tsv", "test": "basic_test.tsv"}


def _grow(rng: random.Random, depth: int, max_depth: int, max_args: int):
    if depth >= max_depth or rng.random() < 0.75:
        return rng.randint(0, 9)
    operator = rng.choice(OPERATORS)
    return (
        operator,
        [_grow(rng, depth + 1, max_depth, max_args) for _ in range(rng.randint(2, max_args))],
    )


def evaluate(tree) -> int:
    if isinstance(tree, int):
        return tree
    operator, children = tree
    values = [evaluate(c) for c in children]
    if operator == "[MIN":
        return min(values)
    if operator == "[MAX":
        return max(values)
    if operator == "[MED":
        return int(statistics.median(values))
    return sum(values) % 10


def tokens(tree) -> list[str]:
    if isinstance(tree, int):
        return [str(tree)]
    operator, children = tree
    return [operator, *[t for c in children for t in tokens(c)], "]"]


def generate(
    n: int,
    seed: int,
    *,
    max_depth: int = 10,
    max_args: int = 10,
    min_length: int = 500,
    max_length: int = 2000,
    max_tries: int | None = None,
) -> list[tuple[str, int]]:
    """``n`` distinct (expression, value) pairs with min_length < length < max_length."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    tries = 0
    limit = max_tries or 2000 * n
    while len(out) < n:
        tries += 1
        if tries > limit:
            raise InputError(
                f"only {len(out)} of {n} ListOps expressions of length ({min_length}, "
                f"{max_length}) after {limit} trees; relax the length bounds or depth"
            )
        tree = _grow(rng, 1, max_depth, max_args)
        if isinstance(tree, int):
            continue
        words = tokens(tree)
        if not min_length < len(words) < max_length:
            continue
        source = " ".join(words)
        if source in seen:
            continue
        seen.add(source)
        out.append((source, evaluate(tree)))
    return out


def write_split(path: Path, rows: list[tuple[str, int]]) -> None:
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["Source", "Target"])
        writer.writerows(rows)


def write_dataset(folder: str | Path, sizes: dict[str, int], seed: int = 0, **options) -> Path:
    """basic_{train,val,test}.tsv with disjoint expressions (one generator, split afterwards)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = generate(sum(sizes.values()), seed, **options)
    start = 0
    for split, n in sizes.items():
        write_split(folder / SPLIT_FILES[split], rows[start : start + n])
        start += n
    return folder


def read_split(path: Path) -> list[tuple[list[int], int]]:
    """(token ids, target) rows; parentheses are dropped, unknown tokens are an error."""
    from surrogate.tasks.shd import TaskDataError

    if not path.exists():
        raise TaskDataError(f"ListOps file not found: {path}")
    rows = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["Source", "Target"]:
            raise TaskDataError(f"{path}: expected a header 'Source<TAB>Target', got {header}")
        for number, row in enumerate(reader, start=2):
            if len(row) < 2:
                raise TaskDataError(f"{path}, line {number}: expected two tab-separated columns")
            words = row[0].replace("(", " ").replace(")", " ").split()
            unknown = [w for w in words if w not in TOKEN_ID]
            if unknown:
                raise TaskDataError(f"{path}, line {number}: unknown ListOps tokens {unknown[:3]}")
            try:
                target = int(row[1])
            except ValueError:
                raise TaskDataError(
                    f"{path}, line {number}: target {row[1]!r} is not 0–9"
                ) from None
            rows.append(([TOKEN_ID[w] for w in words] + [TOKEN_ID["<eos>"]], target))
    return rows
