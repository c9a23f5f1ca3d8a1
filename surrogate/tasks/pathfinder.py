"""Pathfinder: are two markers joined by one dashed curve? Our own generator, and the file format.

An image (32 × 32 for Pathfinder-32, 128 × 128 for Path-X) shows a target contour of short
dashes ("paddles") with a circular marker at each end, plus distractor contours. In a positive
example both markers sit on the target contour; in a negative one the second marker sits on the
far end of a distractor of the same length. Difficulty = contour length in paddles (LRA's hard
set: 14; intermediate 9; baseline 6). Distractors are a third of that long.

Layout (as LRA releases it): ``<root>/<difficulty>/imgs/<k>/sample_<i>.png`` and
``<root>/<difficulty>/metadata/<k>.npy`` — plain text despite the suffix, one line per image:
``imgs/<k> sample_<i>.png <index> <label> …``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elmpipe.errors import InputError

DIFFICULTIES = {"curv_baseline": 6, "curv_contour_length_9": 9, "curv_contour_length_14": 14}


@dataclass(frozen=True)
class PathfinderStyle:
    """Drawing parameters (pixels). The 32 px defaults are a little finer than LRA's published
    values, so that two 14-paddle contours and the distractors fit the image in our generator."""

    size: int = 32
    paddle_length: float = 1.5
    paddle_margin: float = 0.75
    paddle_thickness: float = 0.5
    marker_radius: float = 1.0
    continuity: float = 1.6  # max turn per paddle is ±continuity/2 radians
    distractors: int = 5
    contrast: float = 0.75

    @classmethod
    def path_x(cls) -> PathfinderStyle:
        return cls(
            size=128,
            paddle_length=5.0,
            paddle_margin=2.5,
            paddle_thickness=1.5,
            marker_radius=3.0,
            continuity=1.8,
            distractors=10,
            contrast=0.9,
        )


def _draw_segment(
    image: np.ndarray, p: np.ndarray, q: np.ndarray, width: float, value: float
) -> None:
    size = image.shape[0]
    lo = np.floor(np.minimum(p, q) - width - 1).astype(int).clip(0, size - 1)
    hi = np.ceil(np.maximum(p, q) + width + 1).astype(int).clip(0, size - 1)
    ys, xs = np.mgrid[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1]
    d = q - p
    length2 = max(float(d @ d), 1e-9)
    t = np.clip(((xs - p[0]) * d[0] + (ys - p[1]) * d[1]) / length2, 0, 1)
    dist = np.hypot(xs - (p[0] + t * d[0]), ys - (p[1] + t * d[1]))
    shade = value * np.clip(width + 0.5 - dist, 0, 1)  # anti-aliased edge
    image[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1] = np.maximum(
        image[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1], shade
    )


def _draw_disc(image: np.ndarray, c: np.ndarray, radius: float, value: float) -> None:
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    shade = value * np.clip(radius + 0.5 - np.hypot(xs - c[0], ys - c[1]), 0, 1)
    np.maximum(image, shade, out=image)


def _contour(rng: np.random.Generator, n: int, style: PathfinderStyle) -> list[np.ndarray] | None:
    """Paddle end points of one smooth random contour inside the image, or None.

    Each step turns by a random angle within ±continuity/2; a step that would leave the image or
    come back too close to the contour itself is redrawn (a few times) with a fresh turn.
    """
    margin = style.marker_radius + 1
    step = style.paddle_length + style.paddle_margin
    position = rng.uniform(margin, style.size - margin, 2)
    heading = rng.uniform(0, 2 * math.pi)
    points = [position]
    for _ in range(n):
        for _attempt in range(24):
            turn = rng.uniform(-style.continuity, style.continuity) * 0.5
            candidate = position + step * np.array(
                [math.cos(heading + turn), math.sin(heading + turn)]
            )
            inside = (margin <= candidate).all() and (candidate <= style.size - margin).all()
            clear = all(np.hypot(*(candidate - p)) >= 0.9 * step for p in points[:-1])
            if inside and clear:
                heading += turn
                position = candidate
                break
        else:
            return None
        points.append(position)
    return points


def _draw_contour(image: np.ndarray, points: list[np.ndarray], style: PathfinderStyle) -> None:
    step = style.paddle_length + style.paddle_margin
    for p, q in itertools.pairwise(points):
        direction = (q - p) / step
        _draw_segment(
            image, p, p + direction * style.paddle_length, style.paddle_thickness, style.contrast
        )


def draw_sample(
    rng: np.random.Generator, length: int, positive: bool, style: PathfinderStyle
) -> np.ndarray:
    """One 8-bit grayscale image."""
    for _ in range(1000):
        target = _contour(rng, length, style)
        other = _contour(rng, length, style)
        if target is None or other is None:
            continue
        if min(np.hypot(*(a - b)) for a in target for b in other) < style.paddle_margin + 1:
            continue  # keep the two contours apart so "connected" is unambiguous
        image = np.zeros((style.size, style.size))
        _draw_contour(image, target, style)
        _draw_contour(image, other, style)
        short = max(2, length // 3)
        for _ in range(style.distractors):
            distractor = _contour(rng, short, style)
            if distractor is not None:
                _draw_contour(image, distractor, style)
        end = target[-1] if positive else other[-1]
        _draw_disc(image, target[0], style.marker_radius, 1.0)
        _draw_disc(image, end, style.marker_radius, 1.0)
        return np.round(255 * image.clip(0, 1)).astype(np.uint8)
    raise InputError("could not place Pathfinder contours; the image is too small for them")


def write_dataset(
    root: str | Path,
    n: int,
    seed: int = 0,
    difficulty: str = "curv_contour_length_14",
    style: PathfinderStyle | None = None,
    per_folder: int = 1000,
) -> Path:
    """``n`` balanced images of one difficulty in the LRA layout under ``root/difficulty``."""
    from PIL import Image

    style = style or PathfinderStyle()
    folder = Path(root) / difficulty
    (folder / "metadata").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    length = DIFFICULTIES[difficulty]
    lines: dict[int, list[str]] = {}
    for i in range(n):
        k = i // per_folder
        positive = i % 2 == 0
        image = draw_sample(rng, length, positive, style)
        (folder / "imgs" / str(k)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / "imgs" / str(k) / f"sample_{i}.png")
        lines.setdefault(k, []).append(f"imgs/{k} sample_{i}.png {i} {int(positive)} {length}")
    for k, rows in lines.items():
        (folder / "metadata" / f"{k}.npy").write_text("\n".join(rows) + "\n")
    return folder
