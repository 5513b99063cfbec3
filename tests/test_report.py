"""report.html from a real evaluation folder (score + write_outputs on a synthetic split), checked as text and in a
real headless Chromium."""

from __future__ import annotations

import base64
import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageStat

from cxr14.data.datasets.base import Demographics
from cxr14.data.splits import Split
from cxr14.errors import UserError
from cxr14.judging.evaluate import Scoring, score, write_outputs
from cxr14.judging.report import write_report
from cxr14.judging.thresholds import choose_on_validation
from cxr14.labels import NIH_LABELS
from tests.conftest import load_script

GALLERY_FILE = "heatmaps/00000003_001-Mass.png"
SECTIONS = (
    "Per finding",
    "ROC and precision-recall curves",
    "Training curves",
    "Subgroups",
    "Calibration",
    "Radiologists&#x27; reads",
    "Localisation",
    "Model card",
    "Published results",
)


def synthetic(n_patients: int, per_patient: int, seed: int, name: str, capped_from: int | None = None):
    """A split whose logits carry signal (AUROC about 0.8), Hernia left without positives (undefined)."""
    rng = np.random.default_rng(seed)
    n = n_patients * per_patient
    labels = (rng.random((n, len(NIH_LABELS))) < 0.3).astype(np.uint8)
    labels[:, NIH_LABELS.index("Hernia")] = 0
    logits = 1.3 * labels + rng.normal(-1.0, 1.0, labels.shape)
    patients = np.repeat(np.arange(1, n_patients + 1), per_patient)
    names = np.array([f"{p:08d}_{i % per_patient:03d}.png" for i, p in enumerate(patients)])
    sex, view = rng.choice(np.array(["M", "F"]), n), rng.choice(np.array(["PA", "AP"]), n)
    demo = Demographics(sex, rng.integers(15, 90, n), view)
    return Split(name, names, labels, patients, demo, NIH_LABELS, capped_from), logits


def card(run: Path) -> dict:
    """A model card in the schema inference.model_card writes (checkpoint path, model, config, ...)."""
    config = {
        "model": "convnext_tiny",
        "image_size": 224,
        "data_dir": "data",
        "csv": "a<b>&c.csv",
        "num_epochs": 3,
        "learning_rate": 1e-4,
        "batch_size": 32,
        "max_test_samples": 200,
        "seed": 0,
    }
    return {
        "checkpoint": str(run / "best_model.pth"),
        "model": "convnext_tiny",
        "image_size": 224,
        "in_chans": 1,
        "epoch": 2,
        "weights": "model",
        "validation_mean_auroc": 0.8123,
        "pretrained": True,
        "loss": "focal",
        "trained": "2026-01-02 03:04",
        "labels": list(NIH_LABELS),
        "config": config,
    }


def write_history(path: Path) -> list[dict[str, float]]:
    rows = [
        {
            "epoch": e,
            "train_loss": 0.2 / e,
            "val_mean_auroc": 0.7 + 0.03 * e,
            "val_ema_mean_auroc": 0.71 + 0.03 * e,
            "best_val_mean_auroc": 0.7 + 0.03 * e,
            "lr": 1e-4 / e,
            "images_per_s": 50.0,
            "seconds": 10.0,
            "n_bad": 0,
        }
        for e in (1, 2, 3)
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def localisation(folder: Path) -> dict:
    """metrics["localisation"] as `evaluate --bbox` will write it, with one overlay PNG (box drawn) in the folder."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).convert("RGB")
    ImageDraw.Draw(img).rectangle((10, 12, 40, 44), outline=(0, 255, 0), width=2)
    (folder / GALLERY_FILE).parent.mkdir(parents=True)
    img.save(folder / GALLERY_FILE)
    return {
        "threshold_rule": "peak of the heatmap inside the box",
        "mean_hit_rate": 0.5432,
        "mean_chance": 0.1234,
        "mean_iou": 0.2109,
        "per_class": {"Mass": {"n_boxes": 7, "hit_rate": 0.5714, "mean_iou": 0.2468, "chance": 0.0987}},
        "gallery": [
            {"image": "00000003_001.png", "finding": "Mass", "file": GALLERY_FILE, "hit": True, "iou": 0.3141},
            {"image": "00000004_000.png", "finding": "Mass", "file": "heatmaps/absent.png", "hit": False, "iou": 0.0},
        ],
    }


def make_evaluation(folder: Path, n_patients: int = 60, per_patient: int = 4, capped_from: int | None = 30000) -> dict:
    """A run folder as the training run's test step leaves it: history, then write_outputs (which writes the report)."""
    folder.mkdir(parents=True)
    val, val_logits = synthetic(40, 3, seed=1, name="val")
    test, logits = synthetic(n_patients, per_patient, seed=2, name="test", capped_from=capped_from)
    choice = choose_on_validation(val.labels, val_logits)
    metrics = score(test, logits, choice, Scoring(n_resamples=200), {"data_dir": "data", "lists": "official"})
    metrics["localisation"] = localisation(folder)
    write_history(folder / "metrics.csv")
    probs = 1 / (1 + np.exp(-logits / choice.temperature))
    write_outputs(folder, metrics, test, probs, card(folder))
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "run"
    make_evaluation(folder)
    return folder


class Tags(HTMLParser):
    """Every start tag with its attributes, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = Tags()
    parser.feed(html)
    return [a for t, a in parser.tags if t == name]


def test_write_outputs_writes_a_report_with_every_section(evaluation: Path) -> None:
    html = (evaluation / "report.html").read_text()
    metrics = json.loads((evaluation / "metrics.json").read_text())
    headings = [h for h in SECTIONS if f">{h}</h2>" in html]
    assert headings == list(SECTIONS)
    low, high = metrics["mean_auroc_ci"]
    assert f"{metrics['mean_auroc']:.3f} [{low:.3f}, {high:.3f}]" in html  # the headline, as in metrics.json
    mass = metrics["per_class"]["Mass"]
    assert f'<td class="num">{mass["ci_low"]:.3f}-{mass["ci_high"]:.3f}</td>' in html
    assert f"{mass['threshold']:.3f}" in html and f"{mass['ece']:.3f}" in html
    assert metrics["per_class"]["Hernia"]["auroc"] is None and '>Hernia</th><td class="num">n/a</td>' in html
    assert "Research tool, not a diagnostic device." in html
    assert "Subset of the split." in html and "30,000 test images" in html and "25,596" in html
    assert "random subset of the test split" in html  # the published-results section says it too
    for published in ("about 0.745", "0.822", "0.830", "Xiao et al., WACV 2023", "not comparable"):
        assert published in html
    sex = metrics["subgroups"]["groups"]["sex"]["F"]
    assert f"{sex['mean_auroc']:.3f}" in html and f"{sex['mean_auroc_ci'][0]:.3f}" in html
    cells = "".join(f'<td class="num">{v}</td>' for v in ("7", "0.571", "0.099", "0.247"))
    assert f'<th scope="row">Mass</th>{cells}' in html  # the localisation table's row, rounded as the others
    assert "".join(f'<td class="num">{v}</td>' for v in ("0.543", "0.123", "0.211")) in html
    png = base64.b64encode((evaluation / GALLERY_FILE).read_bytes()).decode()
    assert f'src="data:image/png;base64,{png}"' in html
    assert "heatmaps/absent.png missing from the folder" in html
    assert "best validation mean AUROC 0.790 at epoch 3" in html  # from metrics.csv
    assert "convnext_tiny" in html and "0.812" in html and "a&lt;b&gt;&amp;c.csv" in html and "a<b>" not in html


def test_report_is_self_contained_and_accessible(evaluation: Path) -> None:
    html = (evaluation / "report.html").read_text()
    assert (evaluation / "report.html").stat().st_size < 3 * 2**20
    for remote in ('src="http', "src='http", 'href="http', "url(", "@import", "<script", "<iframe"):
        assert remote not in html
    images = tags(html, "img")
    assert len(images) >= 14 + 14 + 2  # curves, reliability, training, forest, gallery
    assert all(str(a["src"]).startswith("data:image/") and a.get("alt") for a in images)
    assert len(tags(html, "table")) == html.count("<caption>") >= 6
    assert all(a.get("scope") in ("col", "row") for a in tags(html, "th"))
    assert tags(html, "html")[0]["lang"] == "en" and tags(html, "meta")[1]["name"] == "viewport"


def test_missing_parts_say_so(evaluation: Path, tmp_path: Path) -> None:
    """An evaluation without thresholds, temperature, subgroups, predictions or history still makes a full page."""
    run, folder = tmp_path / "run", tmp_path / "run" / "eval-test"
    folder.mkdir(parents=True)
    (run / "best_model.pth").write_bytes(b"")
    (run / "metrics.csv").write_bytes((evaluation / "metrics.csv").read_bytes())
    metrics = json.loads((evaluation / "metrics.json").read_text())
    metrics.update(thresholds=None, subgroups={"min_positives": 10, "groups": {}}, localisation=None, sample=None)
    metrics["calibration"].update(temperature=None, ece_before_temperature=None)
    metrics["model"]["checkpoint"] = "elsewhere/best_model.pth"  # relative, not from here: found beside the folder
    for row in metrics["per_class"].values():
        row.update(threshold=None, sensitivity=None, specificity=None, ppv=None, npv=None, f1=None)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    html = write_report(folder).read_text()
    assert "No curves: test_predictions.csv is not in the evaluation folder." in html
    assert "best validation mean AUROC 0.790 at epoch 3" in html  # the run folder's history, via the checkpoint name
    assert "No thresholds stored with this model" in html and "carries no sex, age or view" in html
    assert "No temperature with this model" in html and "No localisation scores" in html
    assert "Subset of the split." not in html and "240 test images, not the 25,596" in html
    (run / "metrics.csv").unlink()
    assert "No training history: no metrics.csv at" in write_report(folder).read_text()


def test_a_folder_without_metrics_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no metrics\.json"):
        write_report(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(UserError, match="Could not read"):
        write_report(tmp_path)


def test_report_renders_in_headless_chromium(evaluation: Path) -> None:
    shots = load_script("screenshot_report")
    if not shots.CHROMIUM.is_file():
        pytest.skip("Chromium not installed: `apt-get install chromium` (scripts/setup does it as root)")
    pytest.importorskip("playwright.sync_api", reason="Playwright not installed: pip install playwright")
    sizes = [(1280, 900), (390, 844)]
    seen = shots.render_page(evaluation / "report.html", sizes)
    assert seen.errors == []
    for size in sizes:
        image = Image.open(io.BytesIO(seen.screenshots[size])).convert("L")
        assert image.size == size
        assert ImageStat.Stat(image).stddev[0] > 20  # text and tables, not a blank page
        assert seen.scroll_width[size] <= size[0]  # nothing wider than a phone's screen
    assert seen.page_height > 5000  # every section laid out, not an error page
