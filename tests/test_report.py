"""The HTML report (``pimo report``) and the one-image figure (``pimo show``)."""

from __future__ import annotations

import base64
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pimo import PimoValueError
from pimo.cli import main as cli_main
from tests.paths import paper_benchmark_root

CHROMIUM = Path("/usr/bin/chromium")


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


def _write_dataset(root: Path, *, num_normal: int = 6, num_anomalous: int = 5,
                   size: int = 32) -> None:
    """An MVTec-style category ``widget`` with one defect type ``crack``."""
    rng = np.random.default_rng(0)
    category = root / "widget"
    for kind, count in (("good", num_normal), ("crack", num_anomalous)):
        (category / "test" / kind).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            picture = (rng.random((size, size, 3)) * 255).astype(np.uint8)
            Image.fromarray(picture).save(category / "test" / kind / f"{index:03d}.png")
            if kind == "crack":
                mask = np.zeros((size, size), np.uint8)
                mask[8:14 + index, 8:14 + index] = 255
                (category / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(
                    category / "ground_truth" / kind / f"{index:03d}_mask.png"
                )


def _write_maps(folder: Path, *, seed: int, num_normal: int = 6, num_anomalous: int = 5,
                size: int = 16) -> None:
    """Half-resolution maps: noise, raised over (part of) each defect."""
    rng = np.random.default_rng(seed)
    for kind, count in (("good", num_normal), ("crack", num_anomalous)):
        (folder / "test" / kind).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            anomaly_map = rng.random((size, size)).astype(np.float32)
            if kind == "crack":
                extent = 2 + index // 2
                anomaly_map[4:4 + extent, 4:4 + extent] += 0.3 * (index + 1) + 0.2 * seed
            np.save(folder / "test" / kind / f"{index:03d}.npy", anomaly_map)


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two ``pimo evaluate`` output folders (models ``model_a`` and ``model_b``, named after
    their maps folders)."""
    from pimo.evaluate import evaluate_dataset

    tmp = tmp_path_factory.mktemp("evaluations")
    _write_dataset(tmp / "data")
    folders = {}
    for seed, model in enumerate(("model_a", "model_b")):
        _write_maps(tmp / "maps" / model, seed=seed)
        result = evaluate_dataset(
            f"mvtec:{tmp / 'data'}", tmp / "maps" / model, category="widget",
            fpr_bounds=(1e-3, 1e-2),
        )
        result.save(tmp / model)
        folders[model] = tmp / model
    return folders


@pytest.fixture(scope="module")
def synthetic_report(
    evaluations: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from pimo.report import build_report

    return build_report(list(evaluations.values()), tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def benchmark_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three models on two datasets of the published benchmark."""
    root = paper_benchmark_root()
    if root is None:
        pytest.skip("the published benchmark (shared/paper-benchmark) is not available")
    subset = tmp_path_factory.mktemp("benchmark")
    for model in ("padim_r18", "patchcore_wr101", "efficientad_wr101_s_ext"):
        for dataset in ("mvtec/bottle", "mvtec/screw"):
            source = root / "benchmark" / model / dataset
            if not source.is_dir():
                pytest.skip(f"{source} is missing from the published benchmark")
            shutil.copytree(source, subset / model / dataset)
    return subset


# ---------------------------------------------------------------------------------------------
# HTML checks
# ---------------------------------------------------------------------------------------------


class _Inventory(HTMLParser):
    """Tables, images (with alt texts) and resource references of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self.tables.append(attributes.get("id") or "")
        if tag == "img":
            self.images.append(attributes)
        for name in ("src", "href"):
            value = attributes.get(name)
            if value:
                self.references.append(value)


def _inventory(path: Path) -> tuple[_Inventory, str]:
    text = path.read_text(encoding="utf-8")
    parser = _Inventory()
    parser.feed(text)
    return parser, text


def _assert_self_contained(parser: _Inventory, text: str) -> None:
    assert not re.search(r"https?://", text), "the report refers to a URL"
    for reference in parser.references:
        assert reference.startswith(("data:", "#")), reference
    for image in parser.images:
        source = image.get("src") or ""
        assert source.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,",
                                  "data:image/jpeg;base64,"))
        assert len(image.get("alt") or "") > 20, image.get("alt")
        if source.startswith("data:image/svg+xml"):  # no font, image or style fetched
            svg = base64.b64decode(source.split(",", 1)[1]).decode("utf-8")
            assert not re.search(r"(href|src)=\"(?!#|data:)|url\((?!#)|@import", svg)


def _image_kinds(parser: _Inventory) -> dict[str, str]:
    """alt text prefix -> image format, for the report's figures."""
    return {str(image.get("alt")).split(" ", 1)[0]: (image.get("src") or "")[5:].split(";")[0]
            for image in parser.images}


def test_synthetic_report_has_tables_figures_and_heatmaps(synthetic_report: Path) -> None:
    parser, text = _inventory(synthetic_report)
    _assert_self_contained(parser, text)
    assert synthetic_report.name == "report.html"
    assert {"table-ds-mvtec-widget", "confidence-ds-mvtec-widget", "summary-all"} <= set(
        parser.tables)
    assert "summary-mvtec" not in parser.tables  # one collection: same as over all datasets
    alts = [str(image.get("alt")) for image in parser.images]
    assert any(alt.startswith("Boxplots") for alt in alts)
    assert any(alt.startswith("Average-rank") for alt in alts)
    assert any(alt.startswith("PIMO curves") for alt in alts)
    heatmaps = [alt for alt in alts if alt.startswith("Heatmap of widget/test/crack/")]
    assert len(heatmaps) >= 6
    # every model's heatmap of each selected image, side by side
    for model in ("model_a", "model_b"):
        assert len([alt for alt in heatmaps if f" for {model}:" in alt]) == len(heatmaps) // 2
    assert 'class="heatmap-grid" style="--models: 2"' in text
    assert "Heatmap colours" in text and "ground-truth contour" in text  # the legend
    assert 'class="legend-swatch wide" style="background: linear-gradient(' in text
    # vector figures as SVG, heatmaps as JPEG at twice their size on screen
    kinds = _image_kinds(parser)
    assert kinds["Boxplots"] == kinds["Average-rank"] == kinds["PIMO"] == "image/svg+xml"
    assert kinds["Heatmap"] == "image/jpeg"
    # abbreviated headers carry their full name
    assert 'title="Average image-wise rank of AUPIMO (1 = best)"' in text
    numbered = re.findall(r'title="(model_[ab])" aria-sort="none"><button type="button">(\d)<',
                          text)
    assert sorted(numbered) == [("model_a", "1"), ("model_b", "2")] or sorted(numbered) == [
        ("model_a", "2"), ("model_b", "1")]
    assert 'id="ds-mvtec-widget"' in text and 'href="#ds-mvtec-widget"' in text
    assert "skipped" not in text and "not available" not in text


def test_figures_to_data_uris() -> None:
    import io

    from matplotlib.figure import Figure

    from pimo.report import figure_to_data_uri, picture_to_data_uri

    figure = Figure(figsize=(2, 1))
    figure.add_subplot().plot([0, 1], [1, 0])
    svg = figure_to_data_uri(figure)
    assert svg.startswith("data:image/svg+xml;base64,")
    assert b"<svg" in base64.b64decode(svg.split(",", 1)[1])
    figure.add_subplot().plot([0, 1], [1, 0])
    assert figure_to_data_uri(figure, image_format="png").startswith("data:image/png;base64,")
    with pytest.raises(PimoValueError, match="svg"):
        figure_to_data_uri(figure, image_format="gif")
    picture = np.zeros((30, 60, 3), np.uint8)
    for max_width, expected in ((None, (60, 30)), (20, (20, 10)), (100, (60, 30))):
        for image_format in ("jpeg", "png"):
            uri = picture_to_data_uri(picture, max_width=max_width, image_format=image_format)
            assert uri.startswith(f"data:image/{image_format};base64,")
            with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
                assert image.size == expected and image.format == image_format.upper()


def test_report_heatmaps_of_a_model_whose_maps_are_gone(
    evaluations: dict[str, Path], tmp_path: Path
) -> None:
    import json

    from pimo import PimoWarning
    from pimo.report import build_report

    copy = tmp_path / "model_b"
    shutil.copytree(evaluations["model_b"], copy)
    payload = json.loads((copy / "evaluation.json").read_text())
    payload["maps"]["location"] = str(tmp_path / "gone")
    (copy / "evaluation.json").write_text(json.dumps(payload))
    with pytest.warns(PimoWarning, match="model_b on mvtec/widget: the anomaly maps"):
        written = build_report([evaluations["model_a"], copy], tmp_path / "half.html")
    parser, text = _inventory(written)
    _assert_self_contained(parser, text)
    alts = [str(image.get("alt")) for image in parser.images]
    assert any(" for model_a:" in alt for alt in alts if alt.startswith("Heatmap"))
    assert not any(" for model_b:" in alt for alt in alts if alt.startswith("Heatmap"))
    assert "not available" in text and "Heatmaps of model_b: The anomaly maps" in text


def test_report_without_evaluation_record_says_why(
    evaluations: dict[str, Path], tmp_path: Path
) -> None:
    from pimo.report import build_report

    copy = tmp_path / "model_a"
    shutil.copytree(evaluations["model_a"], copy)
    (copy / "evaluation.json").unlink()
    written = build_report([copy], tmp_path / "only.html")
    parser, text = _inventory(written)
    _assert_self_contained(parser, text)
    assert "no evaluation.json" in text.lower()
    assert not any(str(image.get("alt")).startswith("Heatmap") for image in parser.images)
    assert any(str(image.get("alt")).startswith("Boxplots") for image in parser.images)


def test_benchmark_report(benchmark_subset: Path, tmp_path: Path) -> None:
    from pimo.report import build_report

    written = build_report([benchmark_subset], tmp_path / "bench.html")
    parser, text = _inventory(written)
    _assert_self_contained(parser, text)
    for dataset in ("mvtec-bottle", "mvtec-screw"):
        assert f"table-ds-{dataset}" in parser.tables
        assert f"confidence-ds-{dataset}" in parser.tables
    assert "summary-all" in parser.tables
    # every model row carries its rank in parentheses, e.g. "97.1 (2)"
    assert re.search(r">\d+\.\d \(\d\)</td>", text)
    assert len(parser.images) == 2 * 2  # boxplots + average ranks, per dataset
    assert text.lower().count("no evaluation.json beside") == 2


def test_report_errors_name_the_file(tmp_path: Path) -> None:
    from pimo.report import build_report

    with pytest.raises(PimoValueError, match="does not exist"):
        build_report([tmp_path / "missing"], tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PimoValueError, match="holds no score file"):
        build_report([tmp_path / "empty"], tmp_path / "r.html")


def test_cli_report_and_show(evaluations: dict[str, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cli.html"
    code = cli_main(["report", *map(str, evaluations.values()), "-o", str(target),
                     "--no-curves"])
    assert code == 0 and target.is_file()
    png = tmp_path / "one.png"
    assert cli_main(["show", str(evaluations["model_a"]), "crack/003.png", "-o", str(png)]) == 0
    with Image.open(png) as picture:
        assert picture.width > 400 and picture.height > 200
    normal = tmp_path / "normal.png"  # a normal image: heatmap and FPs at the two bounds
    assert cli_main(["show", str(evaluations["model_a"]), "good/002.png", "-o",
                     str(normal)]) == 0, capsys.readouterr().err
    with Image.open(normal) as picture:
        assert picture.width > 400 and picture.height > 200
    assert cli_main(["show", str(evaluations["model_a"]), "nothing.png"]) == 2
    assert "No evaluated image matches" in capsys.readouterr().err
    assert cli_main(["show", str(tmp_path), "0"]) == 2


# ---------------------------------------------------------------------------------------------
# model names, report inputs, moved data
# ---------------------------------------------------------------------------------------------


def _models_of(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8").replace("<wbr>", "")
    return re.findall(r'<th scope="row" class="text">([^<]+)</th>', text.split(
        'id="table-ds-mvtec-widget"', 1)[1].split("</table>", 1)[0])


def test_model_name_recorded_and_defaulted(evaluations: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from pimo.evaluate import default_model_name
    from pimo.report._evaluation import EvaluationRecord

    assert default_model_name(Path("/m/patchcore")) == "patchcore"
    assert default_model_name(Path("/m/patchcore/bottle"), "bottle") == "patchcore"
    assert default_model_name(Path("/m/padim.npz"), "bottle") == "padim"
    assert default_model_name(Path("/m/padim/bottle.pt"), "bottle") == "padim"
    record = json.loads((evaluations["model_a"] / "evaluation.json").read_text())
    assert record["model"] == "model_a"  # the maps folder's name
    data = evaluations["model_a"].parent / "data"
    maps = evaluations["model_a"].parent / "maps" / "model_a"
    code = cli_main(["evaluate", "--dataset", f"mvtec:{data}", "--categories", "all", "--maps",
                     str(maps), "-o", str(tmp_path / "out"), "--fpr-bounds", "1e-3", "1e-2",
                     "--model-name", "PatchCore WR101", "-q"])
    assert code == 0, capsys.readouterr().err
    written = EvaluationRecord.load(tmp_path / "out" / "mvtec" / "widget" / "evaluation.json")
    assert written.model == "PatchCore WR101"
    # a record without a model (older files) falls back to the maps folder's name
    payload = json.loads(written.path.read_text())
    del payload["model"]
    written.path.write_text(json.dumps(payload))
    assert EvaluationRecord.load(written.path).model == "model_a"


def test_report_of_one_models_categories_and_of_named_models(
    evaluations: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = evaluations["model_a"].parent / "data"
    outputs = {}
    for model in ("model_a", "model_b"):  # `--categories all`: OUT/mvtec/widget/
        maps = evaluations["model_a"].parent / "maps" / model
        outputs[model] = tmp_path / f"run_{model}"
        assert cli_main(["evaluate", "--dataset", f"mvtec:{data}", "--categories", "all",
                         "--maps", str(maps), "-o", str(outputs[model]), "--fpr-bounds",
                         "1e-3", "1e-2", "-q"]) == 0
    # one model's folder of categories
    single = tmp_path / "single.html"
    assert cli_main(["report", str(outputs["model_a"]), "-o", str(single),
                     "--no-curves"]) == 0, capsys.readouterr().err
    assert _models_of(single) == ["model_a"]
    # the same category of two models, in folders with the same name: no collision
    both = tmp_path / "both.html"
    assert cli_main(["report", str(outputs["model_a"] / "mvtec" / "widget"),
                     str(outputs["model_b"] / "mvtec" / "widget"), "-o", str(both),
                     "--no-curves"]) == 0, capsys.readouterr().err
    assert sorted(_models_of(both)) == ["model_a", "model_b"]
    # explicit names, for a category folder and for a model's folder of categories
    named = tmp_path / "named.html"
    assert cli_main(["report", "--model", f"first={outputs['model_a'] / 'mvtec' / 'widget'}",
                     "--model", f"second={outputs['model_b']}", "-o", str(named),
                     "--no-curves"]) == 0, capsys.readouterr().err
    assert sorted(_models_of(named)) == ["first", "second"]
    # the same model twice for a dataset: the message says how to name them
    capsys.readouterr()
    assert cli_main(["report", str(outputs["model_a"]), str(evaluations["model_a"]), "-o",
                     str(tmp_path / "twice.html")]) == 2
    assert "--model NAME=PATH" in capsys.readouterr().err
    assert cli_main(["report", "-o", str(tmp_path / "none.html")]) == 2
    assert cli_main(["report", "--model", f"x={tmp_path}", "-o",
                     str(tmp_path / "x.html")]) == 2
    assert "holds neither" in capsys.readouterr().err


def test_report_says_when_maps_or_masks_have_moved(
    evaluations: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    folder = tmp_path / "model_a"
    shutil.copytree(evaluations["model_a"], folder)
    payload = json.loads((folder / "evaluation.json").read_text())
    payload["maps"]["location"] = str(tmp_path / "moved-maps")
    (folder / "evaluation.json").write_text(json.dumps(payload))
    other = tmp_path / "model_b"
    shutil.copytree(evaluations["model_b"], other)
    payload = json.loads((other / "evaluation.json").read_text())
    payload["images"][-1]["mask"] = "widget/ground_truth/crack/gone_mask.png"
    (other / "evaluation.json").write_text(json.dumps(payload))
    target = tmp_path / "moved.html"
    capsys.readouterr()
    assert cli_main(["report", str(folder), str(other), "-o", str(target)]) == 0
    err = capsys.readouterr().err
    assert f"model_a on mvtec/widget: the anomaly maps {tmp_path / 'moved-maps'}" in err
    assert "no longer exist" in err
    assert "model_b on mvtec/widget: 1 of the 11 mask files (e.g." in err
    assert "gone_mask.png" in err
    assert "moved-maps" in target.read_text(encoding="utf-8")
    # nothing is said when every file is in place
    assert cli_main(["report", *map(str, evaluations.values()), "-o", str(target),
                     "--no-curves"]) == 0
    assert "no longer exist" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# in a browser
# ---------------------------------------------------------------------------------------------


def test_report_in_browser(synthetic_report: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(synthetic_report.resolve().as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            assert widths and all(width > 0 for width in widths)
            _assert_tables_fit(page)
            table = "#table-ds-mvtec-widget"
            first_column = f"{table} tbody tr th"
            before = page.eval_on_selector_all(
                first_column, "cells => cells.map(c => c.textContent)"
            )
            assert sorted(before) == ["model_a", "model_b"]
            header = f"{table} thead th:nth-child(1) button"
            page.click(header)
            ascending = page.eval_on_selector_all(
                first_column, "cells => cells.map(c => c.textContent)"
            )
            assert ascending == sorted(before)
            page.click(header)
            descending = page.eval_on_selector_all(
                first_column, "cells => cells.map(c => c.textContent)"
            )
            assert descending == sorted(before, reverse=True)
            assert page.get_attribute(f"{table} thead th:nth-child(1)", "aria-sort") == (
                "descending"
            )
            # a numeric column sorts by value (the sort key), not by text
            mean_column = 3  # Model, Avg. rank, Mean
            page.click(f"{table} thead th:nth-child({mean_column}) button")
            keys = page.eval_on_selector_all(
                f"{table} tbody tr td:nth-child({mean_column})",
                "cells => cells.map(c => Number(c.dataset.sort))",
            )
            assert keys == sorted(keys)
            page.click(f"{table} thead th:nth-child({mean_column}) button")
            keys = page.eval_on_selector_all(
                f"{table} tbody tr td:nth-child({mean_column})",
                "cells => cells.map(c => Number(c.dataset.sort))",
            )
            assert keys == sorted(keys, reverse=True)
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            keep = os.environ.get("PIMO_REPORT_SCREENSHOT")
            if keep:  # to look at it: PIMO_REPORT_SCREENSHOT=/some/file.png pytest ...
                shutil.copyfile(tmp_path / "report.png", keep)
        finally:
            browser.close()
    # nothing but the report itself (and its own data: URIs) was requested
    report_url = synthetic_report.resolve().as_uri()
    assert requests and all(url == report_url or url.startswith("data:")
                            for url in requests), requests
    assert (tmp_path / "report.png").stat().st_size > 10_000


def _assert_tables_fit(page) -> None:
    """No table is wider than its place in the window (nothing to scroll sideways)."""
    overflow = page.eval_on_selector_all(
        ".table-wrap", "wraps => wraps.map(w => w.scrollWidth - w.clientWidth)")
    assert overflow and max(overflow) <= 0, overflow
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400


def test_wide_report_fits_the_window(tmp_path: Path) -> None:
    """Thirteen models with long names: every table fits a 1400-pixel window."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    import pimo
    from pimo.report import build_report

    maps, masks = pimo.make_example(6, 12, (48, 48), seed=5)
    rng = np.random.default_rng(5)
    for number in range(13):
        noisy = maps + rng.normal(0, 0.3 * number + 0.01, maps.shape).astype(maps.dtype)
        result = pimo.aupimo(noisy, masks, fpr_bounds=(1e-3, 1e-2))
        folder = tmp_path / "tree" / f"efficientad_wr101_s_ext_variant_{number:02d}" / "mvtec"
        result.save(folder / "widget" / "aupimo" / "aupimos.json")
        for name, value in (("auroc", 0.9), ("aupro", 0.8), ("aupro_05", 0.5)):
            pimo.save_value(folder / "widget" / f"{name}.json", value - 0.01 * number)
    written = build_report([tmp_path / "tree"], tmp_path / "wide.html")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(written.resolve().as_uri())
            page.wait_for_load_state("load")
            _assert_tables_fit(page)
            # a numbered column names its model in a tooltip
            header = "#confidence-ds-mvtec-widget thead th:nth-child(2)"
            assert page.get_attribute(header, "title").startswith("efficientad_wr101_s_ext_")
        finally:
            browser.close()
