"""Datasets on disk: layouts (MVTec AD, VisA, folder), masks, anomaly-map files, resizing."""

from pimo.data.images import FileProblemError, read_image_size, read_mask
from pimo.data.layouts import (
    LAYOUTS,
    DatasetLayout,
    FolderLayout,
    MVTecLayout,
    Sample,
    Scan,
    VisaCsvLayout,
    VisaLayout,
    open_dataset,
)
from pimo.data.maps import MapSource, match_maps, open_maps, read_map_file
from pimo.data.problems import DatasetError, Problem
from pimo.data.resize import resize_bilinear, resize_nearest

__all__ = [
    "LAYOUTS",
    "DatasetError",
    "DatasetLayout",
    "FileProblemError",
    "FolderLayout",
    "MVTecLayout",
    "MapSource",
    "Problem",
    "Sample",
    "Scan",
    "VisaCsvLayout",
    "VisaLayout",
    "match_maps",
    "open_dataset",
    "open_maps",
    "read_image_size",
    "read_map_file",
    "read_mask",
    "resize_bilinear",
    "resize_nearest",
]
