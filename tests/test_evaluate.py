"""`cxr14 evaluate` on a model trained on phantoms: intervals, validation thresholds, boxes, bad input."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from cxr14.cli import main
from cxr14.judging.thresholds import youden_thresholds
from cxr14.labels import NIH_LABELS

pytestmark = pytest.mark.slow


def evaluate(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = main(["evaluate", "--no-progress", "--n_resamples", "300", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture(scope="module")
def test_eval(phantom_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    run, data = phantom_run
    out = tmp_path_factory.mktemp("eval") / "test"
    assert main(["evaluate", "--checkpoint", str(run / "best_model.pth"), "--data_dir", str(data), "--out", str(out),
                 "--bbox", "--no-progress", "--n_resamples", "500"]) == 0  # fmt: skip
    return out


def test_points_equal_sklearn_and_intervals_hold_them(test_eval: Path, phantom_run: tuple[Path, Path]) -> None:
    metrics = json.loads((test_eval / "metrics.json").read_text())
    pred = pd.read_csv(test_eval / "test_predictions.csv")
    assert metrics["n_images"] == len(pred) and metrics["split"] == "test"
    for name in NIH_LABELS:
        row, y, p = metrics["per_class"][name], pred[f"true_{name}"], pred[name]
        assert abs(row["auroc"] - roc_auc_score(y, p)) < 1e-9  # the CSV holds every probability exactly
        assert abs(row["auprc"] - average_precision_score(y, p)) < 1e-9
        assert row["ci_low"] <= row["auroc"] <= row["ci_high"]
    # a finding with one class only in the (small) validation split gets no threshold (checked in the next test)
    with_threshold = [n for n in NIH_LABELS if metrics["per_class"][n]["threshold"] is not None]
    assert with_threshold and all(metrics["per_class"][n]["sensitivity"] is not None for n in with_threshold)
    low, high = metrics["mean_auroc_ci"]
    assert low <= metrics["mean_auroc"] <= high
    # The training run's own test step went through the same code: same split, same model, same numbers.
    trained = json.loads((phantom_run[0] / "metrics.json").read_text())
    assert abs(trained["mean_auroc"] - metrics["mean_auroc"]) < 1e-9
    assert {"subgroups", "calibration", "thresholds", "data"} <= set(metrics)
    assert set(metrics["subgroups"]["groups"]) == {"sex", "age", "view"}
    assert (test_eval / "per_class.csv").read_text().splitlines()[0].startswith("finding,auroc,ci_low,ci_high")
    assert "<h2" in (test_eval / "report.html").read_text()


def test_report_command_rebuilds_the_page(test_eval: Path, tmp_path: Path, capsys) -> None:
    page = test_eval / "report.html"
    page.unlink()
    assert main(["report", str(test_eval)]) == 0 and "Localisation" in page.read_text()
    assert main(["report", str(tmp_path)]) == 2 and "holds no metrics.json" in capsys.readouterr().err


def test_thresholds_come_from_validation(phantom_run: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    run, data = phantom_run
    stored = torch.load(run / "best_model.pth", weights_only=True)["calibration"]
    code, _ = evaluate(capsys, "--checkpoint", str(run / "best_model.pth"), "--data_dir", str(data), "--split", "val",
                       "--out", str(tmp_path / "val"))  # fmt: skip
    assert code == 0
    val = pd.read_csv(tmp_path / "val" / "val_predictions.csv")
    chosen = youden_thresholds(val[[f"true_{n}" for n in NIH_LABELS]].to_numpy(), val[list(NIH_LABELS)].to_numpy())
    # the stored thresholds are Youden's on these validation probabilities (rounded to 6 decimals in the CSV)
    for mine, theirs in zip(chosen, stored["thresholds"], strict=True):
        assert (theirs is None and np.isnan(mine)) or abs(mine - theirs) < 1e-5


def test_heatmaps_beat_chance_on_the_boxes(test_eval: Path) -> None:
    loc = json.loads((test_eval / "metrics.json").read_text())["localisation"]
    assert loc["n_boxes"] > 20 and loc["mean_hit_rate"] >= 2 * loc["mean_chance"]
    assert (test_eval / "localisation.csv").is_file()
    assert loc["gallery"] and all((test_eval / g["file"]).is_file() for g in loc["gallery"])


def test_radiologist_labels_are_scored_when_present(phantom_run, tmp_path: Path, capsys) -> None:
    run, data = phantom_run
    copy = tmp_path / "data"
    shutil.copytree(data, copy, symlinks=True)
    meta = pd.read_csv(copy / "Data_Entry_2017.csv")
    test = set((copy / "test_list.txt").read_text().split())
    rows = meta[meta["Image Index"].isin(test)].copy()
    rng = np.random.default_rng(0)
    for column in ("Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass"):
        rows[column] = np.where(rng.random(len(rows)) < 0.3, "YES", "NO")
    rows["Set Id"] = "test"
    rows = rows.loc[:, ~rows.columns.str.startswith("Unnamed")]
    with gzip.open(copy / "google2019_nih-chest-xray-labels.csv.gz", "wt") as f:
        rows.to_csv(f, index=False)
    code, _ = evaluate(capsys, "--checkpoint", str(run / "best_model.pth"), "--data_dir", str(copy),
                       "--out", str(tmp_path / "out"))  # fmt: skip
    assert code == 0
    adjudicated = json.loads((tmp_path / "out" / "metrics.json").read_text())["adjudicated"]
    assert set(adjudicated["per_finding"]) == {"Pneumothorax", "Nodule or mass"}
    assert adjudicated["per_finding"]["Pneumothorax"]["n_images"] == len(rows)


class Payload:
    """A pickle that runs code when loaded: weights_only=True must refuse it."""

    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_bad_checkpoints_and_folders(phantom_run, tmp_path: Path, capsys) -> None:
    run, data = phantom_run
    good = run / "best_model.pth"
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:1000])
    code, err = evaluate(capsys, "--checkpoint", str(truncated), "--data_dir", str(data))
    assert code == 2 and "truncated" in err and "truncated.pth" in err
    state = torch.load(good, weights_only=True)
    state["labels"] = list(reversed(state["labels"]))
    torch.save(state, tmp_path / "reordered.pth")
    # A checkpoint's outputs are read by its own label names: reversed names read the same outputs the other way.
    code, err = evaluate(capsys, "--checkpoint", str(tmp_path / "reordered.pth"), "--data_dir", str(data), "--out",
                         str(tmp_path / "reordered"))  # fmt: skip
    assert code == 0, err
    got = json.loads((tmp_path / "reordered" / "metrics.json").read_text())["per_class"]["Atelectasis"]["auroc"]
    original = pd.read_csv(run / "test_predictions.csv")  # the same output was "Hernia" to the original
    assert got == pytest.approx(roc_auc_score(original["true_Atelectasis"], original["Hernia"]), abs=1e-9)
    with (tmp_path / "code.pth").open("wb") as f:
        pickle.dump({"model": Payload()}, f)
    code, err = evaluate(capsys, "--checkpoint", str(tmp_path / "code.pth"), "--data_dir", str(data))
    assert code == 2 and "could run code" in err and "this must never run" not in err
    (tmp_path / "config.json").write_text("{}")
    code, err = evaluate(capsys, "--checkpoint", str(tmp_path / "config.json"), "--data_dir", str(data))
    assert code == 2 and "is not a PyTorch file" in err
    no_boxes = tmp_path / "no_boxes"
    shutil.copytree(data, no_boxes, symlinks=True)
    (no_boxes / "BBox_List_2017.csv").unlink()
    code, err = evaluate(capsys, "--checkpoint", str(good), "--data_dir", str(no_boxes), "--bbox")
    assert code == 2 and "BBox_List_2017.csv" in err
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    for name in ("Data_Entry_2017.csv", "train_val_list.txt", "test_list.txt"):
        shutil.copy(data / name, no_images / name)
    code, err = evaluate(capsys, "--checkpoint", str(good), "--data_dir", str(no_images))
    assert code == 2 and "not under" in err and "cxr14 download" in err
    assert "cxr14 evaluate: error:" in err and "to train" not in err  # the message says whose it is
