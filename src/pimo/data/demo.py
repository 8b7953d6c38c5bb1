"""A small, deterministic MVTec-AD-style dataset and simple anomaly detectors, for ``pimo demo``.

:func:`make_demo_dataset` draws procedural textures (woven fabric, floor tiles, wood grain) with
realistic defects (scratches, blobs, cracks) and their ground-truth masks, in MVTec AD's layout
(``<category>/train/good``, ``<category>/test/<defect>``, ``<category>/ground_truth/<defect>``).

:data:`DETECTORS` are three genuinely different detectors of clearly different quality. The two
patch detectors work on the same local features (mean, standard deviation and gradient energy
of the grey level at two scales), computed at a quarter of the resolution as feature-based
models are, so their maps are upsampled by the evaluation:

``patch_knn``
    The distance of each patch's features to the nearest patch of the normal training images
    (a memory bank, as in PatchCore). The best of the three: it copes with textures whose
    pattern is not aligned from one image to the next.
``patch_gaussian``
    A Gaussian per pixel and feature fitted on the normal training images (as in PaDiM, with a
    diagonal covariance); the score is the sum of squared z-scores. Good on fine, regular
    textures, poor where the pattern shifts between images (the tiles' grout lines).
``local_contrast``
    The absolute difference between the image smoothed at two scales (a difference of
    Gaussians): no training, and it also fires on the texture itself. The weakest.

Some defects are faint, so the per-image scores spread out as they do with real models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

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
            alpha_visible = alpha * rng.uniform(0.3, 1.0)  # some defects are faint
            image = (1 - alpha_visible) * image + alpha_visible * level
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
    """(6, h/4, w/4) features: local mean, std and gradient energy at two scales."""
    gradient = np.hypot(ndimage.sobel(image, 0), ndimage.sobel(image, 1))
    features = []
    for sigma in (1.5, 4.0):
        mean = ndimage.gaussian_filter(image, sigma)
        std = np.sqrt(np.maximum(ndimage.gaussian_filter(image**2, sigma) - mean**2, 0))
        features += [mean, std, ndimage.gaussian_filter(gradient, sigma)]
    return np.stack(features)[:, 2::4, 2::4]


@dataclass
class Detector:
    """A detector: ``fit`` on normal training images, then ``score`` one image to a map."""

    name: str
    description: str
    fit: Callable[[list[np.ndarray]], object]
    score: Callable[[object, np.ndarray], np.ndarray]


def _fit_patch_knn(train: list[np.ndarray]) -> object:
    features = np.stack([_patch_features(image) for image in train])  # (n, d, h, w)
    bank = features.transpose(0, 2, 3, 1).reshape(-1, features.shape[1])
    centre, scale = bank.mean(axis=0), bank.std(axis=0) + 1e-6
    return cKDTree((bank - centre) / scale), centre, scale


def _score_patch_knn(model: object, image: np.ndarray) -> np.ndarray:
    tree, centre, scale = model  # type: ignore[misc]
    features = _patch_features(image)
    queries = (features.reshape(features.shape[0], -1).T - centre) / scale
    distances, _ = tree.query(queries, k=1)
    return ndimage.gaussian_filter(distances.reshape(features.shape[1:]), 1.0)


def _fit_patch_gaussian(train: list[np.ndarray]) -> object:
    features = np.stack([_patch_features(image) for image in train])
    return features.mean(axis=0), features.std(axis=0) + 1e-3


def _score_patch_gaussian(model: object, image: np.ndarray) -> np.ndarray:
    mean, std = model  # type: ignore[misc]
    z_squared = ((_patch_features(image) - mean) / std) ** 2
    return ndimage.gaussian_filter(z_squared.sum(axis=0), 1.0)


def _score_local_contrast(_: object, image: np.ndarray) -> np.ndarray:
    return np.abs(ndimage.gaussian_filter(image, 2.0) - ndimage.gaussian_filter(image, 10.0))


DETECTORS: dict[str, Detector] = {
    "patch_knn": Detector(
        "patch_knn", "nearest normal patch (memory bank of local features)",
        _fit_patch_knn, _score_patch_knn),
    "patch_gaussian": Detector(
        "patch_gaussian", "per-pixel Gaussian of local patch features (fitted on normal images)",
        _fit_patch_gaussian, _score_patch_gaussian),
    "local_contrast": Detector(
        "local_contrast", "difference of Gaussians, no training", lambda train: None,
        _score_local_contrast),
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
