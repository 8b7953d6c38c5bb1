"""A small, deterministic MVTec-AD-style dataset and simple anomaly detectors, for ``pimo demo``.

:func:`make_demo_dataset` draws procedural textures (woven fabric, floor tiles, wood grain) with
realistic defects (scratches, blobs, cracks) and their ground-truth masks, in MVTec AD's layout
(``<category>/train/good``, ``<category>/test/<defect>``, ``<category>/ground_truth/<defect>``).

:data:`DETECTORS` are three genuinely different detectors, whose scores differ clearly by
category (none is best everywhere, which the per-image distributions show):

``patch_gaussian``
    Local patch features (mean, standard deviation and gradient energy over a small window),
    with a Gaussian per pixel and feature fitted on the normal training images; the score is the
    sum of squared z-scores. Computed at a quarter of the resolution, as feature-based models
    are, so the maps are upsampled by the evaluation.
``local_contrast``
    The absolute difference between the image and its local median, smoothed.
``intensity``
    The distance of each (smoothed) pixel to the training images' global mean grey level.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from pimo._io import atomic_write_bytes

__all__ = ["CATEGORIES", "DEFECTS", "DETECTORS", "make_demo_dataset", "write_detector_maps"]

CATEGORIES = ("fabric", "tiles", "wood")
DEFECTS = ("blob", "crack", "scratch")


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _texture(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A normal image in [0, 1] (float64, ``size`` x ``size``)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.0)
    if category == "fabric":
        freq = 24 + rng.uniform(-1, 1)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        base = 0.5 + 0.18 * np.sin(2 * np.pi * freq * x + phase[0]) * np.sin(
            2 * np.pi * freq * y + phase[1])
    elif category == "tiles":
        period = 1 / 4
        offset = rng.uniform(0, period, size=2)
        gx = np.abs(((x + offset[0]) % period) - period / 2) > period / 2 - 0.012
        gy = np.abs(((y + offset[1]) % period) - period / 2) > period / 2 - 0.012
        base = 0.6 - 0.3 * (gx | gy) + 0.05 * ndimage.gaussian_filter(
            rng.normal(size=(size, size)), size / 16)
    else:  # wood
        centre = rng.uniform(-0.5, 1.5, size=2)
        radius = np.hypot((x - centre[0]) * 0.3, y - centre[1])
        base = 0.45 + 0.12 * np.sin(2 * np.pi * 14 * radius + 2 * noise)
    return np.clip(base + 0.04 * noise, 0, 1)


def _defect(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A defect's soft alpha in [0, 1] and its grey level."""
    canvas = Image.new("L", (size, size), 0)
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    margin = size // 8
    if kind == "scratch":
        x0, y0 = rng.uniform(margin, size - margin, size=2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(size / 5, size / 2.5)
        x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
        draw.line([(x0, y0), (x1, y1)], fill=255, width=max(2, size // 100))
        level = 0.95
    elif kind == "blob":
        cx, cy = rng.uniform(margin, size - margin, size=2)
        rx, ry = rng.uniform(size / 30, size / 12, size=2)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        level = 0.15
    else:  # crack: a random walk
        point = rng.uniform(margin, size - margin, size=2)
        heading = rng.uniform(0, 2 * np.pi)
        points = [tuple(point)]
        for _ in range(12):
            heading += rng.normal(0, 0.6)
            point = np.clip(point + size / 40 * np.array([np.cos(heading), np.sin(heading)]),
                            2, size - 3)
            points.append(tuple(point))
        draw.line(points, fill=255, width=max(2, size // 80))
        level = 0.05
    alpha = np.asarray(canvas, dtype=np.float64) / 255
    return ndimage.gaussian_filter(alpha, 0.7) * (alpha.max() > 0), level


def _save_image(path: Path, image: np.ndarray) -> None:
    atomic_write_bytes(path, _png_bytes((np.clip(image, 0, 1) * 255).round().astype(np.uint8)))


def make_demo_dataset(
    root: str | os.PathLike[str],
    *,
    size: int = 256,
    num_normal: int = 20,
    num_anomalous: int = 20,
    num_train: int = 12,
    categories: Sequence[str] = CATEGORIES,
    seed: int = 0,
) -> Path:
    """Write the demo dataset in MVTec AD's layout and return its root.

    Parameters
    ----------
    root : path-like
        The dataset root (created).
    size : int
        Side of the square images, in pixels.
    num_normal, num_anomalous : int
        Test images per category (anomalous ones cycle through :data:`DEFECTS`).
    num_train : int
        Normal training images per category (the detectors are fitted on them).
    categories : sequence of str
        Among :data:`CATEGORIES`.
    seed : int
        Everything is drawn from this seed: the same arguments give the same files.
    """
    root = Path(root)
    for category_index, category in enumerate(categories):
        if category not in CATEGORIES:
            raise ValueError(f"unknown demo category {category!r}; choose among {CATEGORIES}")
        rng = np.random.default_rng([seed, category_index])
        for index in range(num_train):
            _save_image(root / category / "train" / "good" / f"{index:03d}.png",
                        _texture(category, size, rng))
        for index in range(num_normal):
            _save_image(root / category / "test" / "good" / f"{index:03d}.png",
                        _texture(category, size, rng))
        for index in range(num_anomalous):
            kind = DEFECTS[index % len(DEFECTS)]
            image = _texture(category, size, rng)
            alpha, level = _defect(kind, size, rng)
            image = (1 - alpha) * image + alpha * level
            name = f"{index // len(DEFECTS):03d}"
            _save_image(root / category / "test" / kind / f"{name}.png", image)
            mask = ((alpha > 0.3) * 255).astype(np.uint8)
            atomic_write_bytes(root / category / "ground_truth" / kind / f"{name}_mask.png",
                               _png_bytes(mask))
    return root


# ------------------------------------------------------------------------------- detectors
def _read_grey(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float64) / 255


def _patch_features(image: np.ndarray) -> np.ndarray:
    """(3, h, w) features at a quarter of the resolution: local mean, std, gradient energy."""
    mean = ndimage.uniform_filter(image, 7)
    std = np.sqrt(np.maximum(ndimage.uniform_filter(image**2, 7) - mean**2, 0))
    gradient = ndimage.uniform_filter(np.hypot(ndimage.sobel(image, 0), ndimage.sobel(image, 1)), 7)
    features = np.stack([mean, std, gradient])
    return features[:, 2::4, 2::4]


@dataclass
class Detector:
    """A detector: ``fit`` on normal training images, then ``score`` one image to a map."""

    name: str
    description: str
    fit: Callable[[list[np.ndarray]], object]
    score: Callable[[object, np.ndarray], np.ndarray]


def _fit_patch_gaussian(train: list[np.ndarray]) -> object:
    features = np.stack([_patch_features(image) for image in train])
    mean = features.mean(axis=0)
    std = features.std(axis=0) + 1e-3
    return mean, std


def _score_patch_gaussian(model: object, image: np.ndarray) -> np.ndarray:
    mean, std = model  # type: ignore[misc]
    z_squared = ((_patch_features(image) - mean) / std) ** 2
    return ndimage.gaussian_filter(z_squared.sum(axis=0), 1.0)


def _score_local_contrast(_: object, image: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(np.abs(image - ndimage.median_filter(image, 9)), 2.0)


def _fit_intensity(train: list[np.ndarray]) -> object:
    return float(np.mean([image.mean() for image in train]))


def _score_intensity(model: object, image: np.ndarray) -> np.ndarray:
    return np.abs(ndimage.gaussian_filter(image, 3.0) - float(model))  # type: ignore[arg-type]


DETECTORS: dict[str, Detector] = {
    "patch_gaussian": Detector(
        "patch_gaussian", "per-pixel Gaussian of local patch features (fitted on normal images)",
        _fit_patch_gaussian, _score_patch_gaussian),
    "local_contrast": Detector(
        "local_contrast", "difference to the local median", lambda train: None,
        _score_local_contrast),
    "intensity": Detector(
        "intensity", "distance to the mean grey level", _fit_intensity, _score_intensity),
}


def write_detector_maps(
    dataset_root: str | os.PathLike[str], maps_root: str | os.PathLike[str], detector: str
) -> Path:
    """Fit ``detector`` on each category's training images and write one ``.npy`` map per test
    image to ``maps_root/<category>/test/<defect>/<id>.npy`` (float32); return ``maps_root``.
    """
    dataset_root, maps_root = Path(dataset_root), Path(maps_root)
    chosen = DETECTORS[detector]
    for category_dir in sorted(p for p in dataset_root.iterdir() if (p / "test").is_dir()):
        train = [_read_grey(p) for p in sorted((category_dir / "train" / "good").glob("*.png"))]
        model = chosen.fit(train)
        for image_path in sorted((category_dir / "test").glob("*/*.png")):
            anomaly_map = chosen.score(model, _read_grey(image_path)).astype(np.float32)
            relative = image_path.relative_to(category_dir).with_suffix(".npy")
            import io

            buffer = io.BytesIO()
            np.save(buffer, anomaly_map)
            atomic_write_bytes(maps_root / category_dir.name / relative, buffer.getvalue())
    return maps_root
