"""Real radiographs through the real CLI: Kermany et al.'s pediatric films as class folders (a model learns from
them, on two seeds), another tool's predictions scored and compared, and the report of a model that is not NIH's.

The films are a fixed subset of the release (tests/data/kermany_subset, CC BY 4.0, see its README), so the suite
needs nothing outside the repository.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxr14.data.datasets.folder import PATTERNS
from cxr14.judging.report.published import KERMANY_TEST_SHA256, images_fingerprint
from tests.conftest import FOLDER, KERMANY, REPO, run_cli

# --- the class-folder reader on real films -----------------------------------------------------------------------


def test_folder_reader_reads_the_release_layout(capsys: pytest.CaptureFixture) -> None:
    """Split folders as the split, NORMAL as the negative class, patients from the names, namespaced by split."""
    done = run_cli("-m", "cxr14", "download", "--check", *FOLDER)
    assert done.returncode == 0, done.stderr
    # 395 children, not 388: 7 ids (person35, ...) are in both train/ and test/, and are different children.
    assert "400 films of 395 patients; labels PNEUMONIA" in done.stdout
    assert "its own (train 240, val 0, test 160;" in done.stdout
    assert "NORMAL 200 (negative for every label); PNEUMONIA 200" in done.stderr
    leak = run_cli("-m", "cxr14", "download", "--check", *FOLDER, "--patient_scope", "dataset")
    assert leak.returncode == 2 and "patient(s) are in both" in leak.stderr and "test" in leak.stderr
    assert "Traceback" not in leak.stderr


def test_folder_reader_needs_a_pattern_that_fits(tmp_path: Path) -> None:
    bad = run_cli("-m", "cxr14", "download", "--check", "--dataset", "folder", "--data_dir", str(KERMANY),
                  "--patient_pattern", PATTERNS["nih"])  # fmt: skip
    assert bad.returncode == 2 and "400 file name(s) do not match --patient_pattern" in bad.stderr
    broken = run_cli("-m", "cxr14", "download", "--check", "--dataset", "folder", "--data_dir", str(KERMANY),
                     "--patient_pattern", "(person")  # fmt: skip
    assert broken.returncode == 2 and "is not a regular expression" in broken.stderr
    wrong = run_cli("-m", "cxr14", "download", "--check", "--data_dir", str(KERMANY))
    assert wrong.returncode == 2 and "pass --dataset folder" in wrong.stderr and "Traceback" not in wrong.stderr
    by_image = run_cli("-m", "cxr14", "download", "--check", "--dataset", "folder", "--data_dir", str(KERMANY))
    assert by_image.returncode == 0 and "400 films of 400 images (no patients named)" in by_image.stdout
    assert "every film counts as its own patient" in by_image.stderr


def test_folder_without_split_folders_and_several_classes(tmp_path: Path) -> None:
    """No split folders: a seeded patient-wise split; no normal class: every class is a label."""
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "flat" / cls).mkdir(parents=True)
        for f in sorted((KERMANY / "train" / cls).iterdir())[:40]:
            shutil.copy(f, tmp_path / "flat" / cls / f.name)
    shutil.copytree(tmp_path / "flat" / "PNEUMONIA", tmp_path / "flat" / "OTHER")
    done = run_cli("-m", "cxr14", "download", "--check", "--dataset", "folder", "--data_dir", str(tmp_path / "flat"),
                   "--patient_pattern", "kermany", "--negative", "NORMAL")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "labels OTHER, PNEUMONIA" in done.stdout and "none of its own: a seeded patient-wise one" in done.stdout
    shutil.rmtree(tmp_path / "flat" / "NORMAL")
    done = run_cli("-m", "cxr14", "download", "--check", "--dataset", "folder", "--data_dir", str(tmp_path / "flat"))
    assert done.returncode == 0 and "labels OTHER, PNEUMONIA" in done.stdout  # no normal class: each is a label
    gone = run_cli("-m", "cxr14", "download", "--check", "--dataset", "folder", "--data_dir", str(tmp_path / "flat"),
                   "--negative", "NORMAL")  # fmt: skip
    assert gone.returncode == 2 and "--negative 'NORMAL' is not a class folder" in gone.stderr


# --- a model learns from real films --------------------------------------------------------------------------------


def test_a_model_learns_from_real_films_on_two_seeds(kermany_runs: list[Path]) -> None:
    """AUROC on 160 held-out real films (other children, the release's test folder) well above chance, both seeds."""
    aurocs = []
    for run in kermany_runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["labels"] == ["PNEUMONIA"] and metrics["n_images"] == 160
        preds = pd.read_csv(run / "test_predictions.csv")
        assert metrics["mean_auroc"] == pytest.approx(roc_auc_score(preds["true_PNEUMONIA"], preds["PNEUMONIA"]))
        aurocs.append(metrics["mean_auroc"])
    assert min(aurocs) > 0.7, aurocs  # chance is 0.5; 64 px and 240 films cap what a model can reach
    assert abs(aurocs[0] - aurocs[1]) < 0.1, aurocs


def test_report_of_a_model_that_is_not_nih(kermany_runs: list[Path]) -> None:
    """No NIH table for a pneumonia model, no empty demographic groups, no NIH-only sections."""
    html = (kermany_runs[0] / "report.html").read_text()
    assert "0.745" not in html and "Published results" not in html  # the subset is not the paper's test set
    assert "carries no sex, age or view" in html and "sex: unknown" not in html
    assert "Radiologists&#x27; reads" not in html and "Localisation" not in html
    config = json.loads((kermany_runs[0] / "config.json").read_text())
    assert config["dataset"] == "folder" and config["patient_pattern"] == "kermany"


def test_published_results_follow_the_test_films(tmp_path: Path) -> None:
    """Kermany et al.'s figures stand beside exactly their 624 test films; NIH's beside NIH's 14 findings only."""
    from cxr14.judging.report import write_report

    names = (KERMANY / "kermany_test_names.txt").read_text().split()
    assert len(names) == 624 and images_fingerprint(names) == KERMANY_TEST_SHA256
    rng = np.random.default_rng(0)
    truth = np.array([0] * 234 + [1] * 390)
    frame = pd.DataFrame({"image": [f"test/X/{n}" for n in names], "patient": range(624), "PNEUMONIA": rng.random(624),
                          "true_PNEUMONIA": truth})  # fmt: skip
    frame.to_csv(tmp_path / "test_predictions.csv", index=False)
    row = {"auroc": 0.5, "ci_low": 0.45, "ci_high": 0.55, "tp": 300, "fp": 100, "tn": 134, "fn": 90,
           "sensitivity": 300 / 390, "specificity": 134 / 234}  # fmt: skip
    metrics = {"split": "test", "labels": ["PNEUMONIA"], "per_class": {"PNEUMONIA": row}, "mean_auroc": 0.5,
               "mean_auroc_ci": [0.45, 0.55], "n_images": 624, "n_patients": 624,
               "data": {"dataset": "folder", "images_sha256": images_fingerprint(names)},
               "model": {"model": "m"}}  # fmt: skip
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    html = write_report(tmp_path).read_text()
    assert "Kermany et al., Cell 172(5), 2018" in html and "0.968" in html and "90.1%" in html
    assert "69.6%" in html  # this evaluation's accuracy at its threshold: (300 + 134) / 624
    metrics["data"]["images_sha256"] = images_fingerprint(names[:-1])  # one film fewer: not the paper's test set
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert "Published results" not in write_report(tmp_path).read_text()


# --- another tool's predictions ------------------------------------------------------------------------------------


def foreign_predictions(path: Path, run: Path, sep: str = ",", drop: int = 0) -> pd.DataFrame:
    """A predictions file as another toolkit writes it: its own column names (lower case, just the file name),
    its own scores (a noisy copy of the model's), optionally `drop` films fewer."""
    ours = pd.read_csv(run / "test_predictions.csv")
    rng = np.random.default_rng(3)
    scores = np.clip(ours["PNEUMONIA"] * 0.6 + rng.random(len(ours)) * 0.4, 0, 1)
    frame = pd.DataFrame({"filename": [Path(n).name for n in ours["image"]], "pneumonia": scores})
    frame.iloc[drop:].to_csv(path, index=False, sep=sep)
    return ours.assign(theirs=scores).iloc[drop:]


def test_evaluate_a_predictions_file(kermany_runs: list[Path], tmp_path: Path) -> None:
    """Same metrics, intervals and report as a model; AUROC equal to scikit-learn's on the same rows."""
    expected = foreign_predictions(tmp_path / "theirs.csv", kermany_runs[0], sep=";")  # a European spreadsheet's CSV
    done = run_cli("-m", "cxr14", "evaluate", "--predictions", str(tmp_path / "theirs.csv"), *FOLDER,
                   "--out", str(tmp_path / "eval"), "--n_resamples", "200", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["mean_auroc"] == pytest.approx(roc_auc_score(expected["true_PNEUMONIA"], expected["theirs"]))
    assert metrics["n_images"] == 160 and metrics["label_map"]["mapped"][0]["model"] == ["pneumonia"]
    assert metrics["predictions_file"]["scored"] == 160 and metrics["mean_auroc_ci"][0] < metrics["mean_auroc"]
    html = (tmp_path / "eval" / "report.html").read_text()
    assert "predictions file theirs.csv" in html and "Training curves" not in html


def test_a_predictions_file_of_other_films_is_refused_or_intersected(kermany_runs: list[Path], tmp_path: Path) -> None:
    expected = foreign_predictions(tmp_path / "short.csv", kermany_runs[0], drop=10)
    args = ("-m", "cxr14", "evaluate", "--predictions", str(tmp_path / "short.csv"), *FOLDER, "--n_resamples", "200",
            "--no-progress")  # fmt: skip
    refused = run_cli(*args, "--out", str(tmp_path / "a"))
    assert refused.returncode == 2 and "10 of the split's films are not in the file" in refused.stderr
    assert "--intersect" in refused.stderr and not (tmp_path / "a").exists()
    done = run_cli(*args, "--out", str(tmp_path / "b"), "--intersect")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "scoring the 150 films in both" in done.stderr
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["n_images"] == 150 and metrics["predictions_file"]["intersect"] is True
    assert metrics["mean_auroc"] == pytest.approx(roc_auc_score(expected["true_PNEUMONIA"], expected["theirs"]))


def test_compare_a_model_with_a_predictions_file(kermany_runs: list[Path], tmp_path: Path) -> None:
    """A cxr14 model and a published model's file, pairwise on the same films."""
    expected = foreign_predictions(tmp_path / "theirs.csv", kermany_runs[0])
    model = kermany_runs[0] / "best_model.pth"
    done = run_cli("-m", "cxr14", "compare", str(model), str(tmp_path / "theirs.csv"), "--data_dir", str(KERMANY),
                   "--out", str(tmp_path / "cmp"), "--n_resamples", "200", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    row = result["comparisons"][0]["per_class"]["PNEUMONIA"]
    assert result["n_images"] == 160 and row["p_value"] is not None
    assert row["auroc_a"] == pytest.approx(roc_auc_score(expected["true_PNEUMONIA"], expected["PNEUMONIA"]), abs=1e-6)
    assert row["auroc_b"] == pytest.approx(roc_auc_score(expected["true_PNEUMONIA"], expected["theirs"]))


# --- knowing a child from an adult: the unusual-film check on real films -----------------------------------------


@pytest.fixture(scope="module")
def foreign_films(tmp_path_factory) -> Path:
    """Films a pediatric model should not diagnose: three real adult NIH films, NEMA's adult chest CR and its
    extremity CR (when pydicom-data is installed), its own kind of film on its side and upside down; and, as the
    control, upright held-out films of its own kind."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("foreign")
    for f in (REPO / "tests" / "data" / "nih_real").glob("*.png"):
        shutil.copy(f, folder / f"adult_{f.name}")
    try:
        import data_store

        nema = Path(data_store.__file__).parent / "data"
        shutil.copy(nema / "RG1_UNCR.dcm", folder / "adult_RG1.dcm")
        shutil.copy(nema / "RG3_UNCR.dcm", folder / "extremity_RG3.dcm")
    except ImportError:
        pass
    own = sorted((KERMANY / "test").rglob("*.jpeg"))[::8]  # 20 held-out children
    for i, f in enumerate(own):
        film = Image.open(f).convert("L")
        film.save(folder / f"own_{i:02d}.png")
        film.rotate(90, expand=True).save(folder / f"side_{i:02d}.png")
        film.rotate(180).save(folder / f"upside_{i:02d}.png")
    return folder


def test_a_pediatric_model_does_not_diagnose_adults_or_turned_films(
    kermany_runs: list[Path], foreign_films: Path, capsys: pytest.CaptureFixture
) -> None:
    """Turned films are named as such, NEMA's adult and extremity CR are flagged, adults lie farther than children."""
    from cxr14.cli import main

    code = main(["predict", str(foreign_films), "--checkpoint", str(kermany_runs[0] / "best_model.pth"), "--json",
                 "--device", "cpu", "--no-progress", "--num_workers", "0"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err
    rows = {Path(r["file"]).stem: r for r in map(json.loads, out.out.splitlines())}
    unusual = {k: r["unusual"] for k, r in rows.items()}
    for name, row in rows.items():
        if name.startswith(("side", "upside")):  # named from the film itself
            turn = "a quarter turn counter-clockwise" if name.startswith("side") else "upside down"
            assert f"looks rotated ({turn}" in row["reason"] and row["findings"] == [], name
    for name in ("adult_RG1", "extremity_RG3"):
        if name in rows:  # NEMA's films, when pydicom-data is installed
            assert rows[name]["unusual"] and "unlike the films the model was trained on" in rows[name]["reason"]
    # This model is small (64 px, 240 films): the adults lie clearly farther than the children, and the benchmark's
    # full model flags all three (README); its own kind passes (about 1% flagged by design).
    score = {k: r["ood_score"] for k, r in rows.items()}
    adults = [v for k, v in score.items() if k.startswith("adult_0")]
    own = [v for k, v in score.items() if k.startswith("own")]
    assert np.mean(adults) > np.mean(own) + 0.2 and max(adults) > 1, (adults, own)
    assert sum(unusual[k] for k in unusual if k.startswith("own")) <= 2
