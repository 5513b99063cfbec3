"""Knowing when not to answer: the cheap checks, the gate's statistics, and the flag wherever a prediction leaves
cxr14 (predict, evaluate, fit_gate; serve, the page and the exports have theirs in their own test files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from cxr14.cli import main
from cxr14.data.films.upload import Film, open_film, unusual_film
from cxr14.errors import UserError
from cxr14.model import gate
from tests.conftest import REPO, TINY_TRAIN, make_nih_folder

REAL = REPO / "tests" / "data" / "nih_real"  # three real NIH films


# --- the cheap checks and the statistics ------------------------------------------------------------------------


def test_cheap_checks_name_what_is_plainly_not_a_chest_film(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    Image.fromarray(load_sample_images().images[1]).save(photo)
    assert "colour photograph" in unusual_film(open_film(photo))
    assert "aspect ratio 4.0" in unusual_film(Film(np.random.default_rng(0).integers(0, 255, (100, 400), np.uint8)))
    assert "nearly blank" in unusual_film(Film(np.full((256, 256), 90, np.uint8)))
    rgb = tmp_path / "rgb.png"  # a radiograph saved as RGB (as 519 of NIH's PNGs are RGBA): gray, not colour
    Image.open(REAL / "00000001_000.png").convert("RGB").save(rgb)
    for film in (REAL / "00000001_000.png", rgb):
        assert unusual_film(open_film(film)) == ""


def test_gate_flags_about_one_percent_of_its_own_kind_and_the_shifted() -> None:
    rng = np.random.default_rng(0)
    cov = np.diag(np.linspace(0.2, 3.0, 100))
    train, val, same = (rng.multivariate_normal(np.zeros(100), cov, n) for n in (3000, 1000, 2000))
    layout = [("pooled features", 10), ("a", 20), ("b", 70)]  # "b" is wider than PCA_DIMS: projected
    fitted = gate.fit(train, val, layout)
    assert fitted is not None and fitted.threshold > 0 and fitted.n_fit == 3000 and fitted.n_validation == 1000
    assert [p.name for p in fitted.parts] == ["a", "b"]  # the pooled features only when there is nothing else
    assert fitted.parts[1].projection.shape == (70, gate.PCA_DIMS)
    share = float((fitted.scores(same) > 1).mean())
    assert 0.002 < share < 0.03  # about 1% of new films of the same kind
    shifted = same.copy()
    shifted[:, 10:30] += 3.0  # one part's statistics move: flagged
    assert (fitted.scores(shifted) > 1).mean() > 0.95
    torch_scores = fitted.torch_scores(torch.from_numpy(same[:50]).float()).numpy()
    np.testing.assert_allclose(torch_scores, fitted.scores(same[:50]), rtol=1e-4)
    for stored in (fitted.to_state(), json.loads(json.dumps(fitted.to_json()))):  # a checkpoint's, config.json's
        again = gate.from_state(stored, "x", feature_dim=100)
        np.testing.assert_allclose(again.scores(same[:50]), fitted.scores(same[:50]), rtol=1e-5)
    assert gate.fit(train, val[: gate.MIN_VALIDATION - 1], layout) is None  # too few validation films: no gate


def test_a_small_validation_split_still_flags_about_one_percent() -> None:
    """The threshold rests on the training films' tail: 20 validation films set it about as well as 1,000."""
    rng = np.random.default_rng(1)
    cov = np.diag(np.linspace(0.2, 3.0, 40))
    train, same = rng.multivariate_normal(np.zeros(40), cov, 4000), rng.multivariate_normal(np.zeros(40), cov, 4000)
    shares = [float((gate.fit(train, rng.multivariate_normal(np.zeros(40), cov, 20), [("a", 40)]).scores(same) > 1)
                    .mean()) for _ in range(20)]  # fmt: skip
    assert 0.002 < np.mean(shares) < 0.03 and max(shares) < 0.05, shares


def test_a_gate_of_cxr14_0_1_still_scores_as_it_did() -> None:
    """The one-part form (mean, precision, threshold of the pooled features) loads and gives distance / threshold."""
    rng = np.random.default_rng(2)
    mean, features = rng.normal(size=8), rng.normal(size=(5, 20))
    old = {"mean": torch.from_numpy(mean).float(), "precision": torch.eye(8), "threshold": 2.0, "n_fit": 100,
           "n_validation": 40, "quantile": 0.99, "method": gate.METHOD_V1}  # fmt: skip
    loaded = gate.from_state(old, "old.pth", feature_dim=20)
    expected = np.linalg.norm(features[:, :8] - mean.astype(np.float32), axis=1) / 2.0
    np.testing.assert_allclose(loaded.scores(features), expected, rtol=1e-5)
    assert loaded.summary()["method"] == gate.METHOD_V1


def test_damaged_or_foreign_gate_statistics_are_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    state = gate.fit(rng.normal(size=(200, 8)), rng.normal(size=(60, 8)), [("a", 8)]).to_state()
    with pytest.raises(UserError, match="belongs to another model"):
        gate.from_state(state, "m.pth", feature_dim=4)
    part = state["parts"][0]
    for broken in ({**state, "parts": [{**part, "precision": torch.zeros(3, 3)}]}, {**state, "threshold": float("nan")},
                   {k: v for k, v in state.items() if k != "parts"}):  # fmt: skip
        with pytest.raises(UserError, match="damaged") as err:
            gate.from_state(broken, "m.pth", feature_dim=8)
        assert "\n" not in str(err.value)


# --- through the real CLI, on the shared phantom model ---------------------------------------------------------


@pytest.fixture(scope="module")
def odd_films(phantom_run, tmp_path_factory) -> Path:
    """A phantom test film, the three real NIH films, a colour photograph, a phantom on its side, one upside down,
    an inverted one."""
    folder = tmp_path_factory.mktemp("odd")
    phantom = sorted((phantom_run[1] / "images").glob("*.png"))[7]
    shutil.copy(phantom, folder / "phantom.png")
    for f in REAL.glob("*.png"):
        shutil.copy(f, folder / f"real_{f.name}")
    Image.fromarray(load_sample_images().images[0]).save(folder / "photo.jpg")
    film = Image.open(phantom).convert("L")
    film.rotate(90).save(folder / "rotated.png")
    film.rotate(180).save(folder / "upside_down.png")
    Image.fromarray(255 - np.array(film)).save(folder / "inverted.png")
    return folder


def predict_rows(capsys, *args: str) -> tuple[int, dict[str, dict], str]:
    code = main(["predict", *args, "--json", "--device", "cpu", "--no-progress", "--num_workers", "0"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    rows = {Path(r["file"]).name: r for r in map(json.loads, out.out.splitlines())}
    return code, rows, out.err


@pytest.mark.slow
def test_predict_flags_films_unlike_the_training_data(phantom_run, odd_films, capsys) -> None:
    checkpoint = str(phantom_run[0] / "best_model.pth")
    code, rows, err = predict_rows(capsys, str(odd_films), "--checkpoint", checkpoint)
    assert code == 0 and len(rows) == 8
    assert rows["phantom.png"]["unusual"] is False and rows["phantom.png"]["ood_score"] < 1
    assert "colour photograph" in rows["photo.jpg"]["reason"]
    for name in ("real_00000001_000.png", "real_00000002_000.png", "real_00000013_003.png", "inverted.png"):
        row = rows[name]
        assert row["unusual"] is True and row["ood_score"] > 1 and "unlike the films" in row["reason"], name
        assert row["findings"] == [] and len(row["probabilities"]) == 14  # given, not called
    for name, turn in (("rotated.png", "a quarter turn counter-clockwise"), ("upside_down.png", "upside down")):
        row = rows[name]  # named from the film itself, whatever the gate says
        assert row["unusual"] is True and f"looks rotated ({turn}" in row["reason"] and row["findings"] == [], name
    assert "8 film(s) scored; 7 unusual (flagged in the output" in err
    code, kept, err = predict_rows(capsys, str(odd_films), "--checkpoint", checkpoint, "--on_unusual", "skip")
    assert code == 0 and list(kept) == ["phantom.png"] and "left out of the output (--on_unusual skip)" in err


@pytest.mark.slow
def test_a_model_without_a_gate_says_so_and_fit_gate_adds_it(phantom_run, odd_films, tmp_path, capsys) -> None:
    state = torch.load(phantom_run[0] / "best_model.pth", weights_only=True)
    assert state["gate"]["n_validation"] >= gate.MIN_VALIDATION  # training fitted it
    state.pop("gate")
    bare = tmp_path / "bare.pth"
    torch.save(state, bare)
    code, rows, err = predict_rows(capsys, str(odd_films / "phantom.png"), str(odd_films / "photo.jpg"),
                                   "--checkpoint", str(bare))  # fmt: skip
    assert code == 0 and "carries no out-of-distribution gate" in err and "cxr14 fit_gate" in err
    assert rows["phantom.png"]["ood_score"] is None and rows["phantom.png"]["unusual"] is False
    assert rows["photo.jpg"]["unusual"] is True  # the cheap checks still run
    fit = ["fit_gate", "--checkpoint", str(bare), "--data_dir", str(phantom_run[1]), "--device", "cpu", "--no-progress",
           "--num_workers", "0"]  # fmt: skip
    assert main(fit) == 0
    assert "gate stored in" in capsys.readouterr().out
    refit = torch.load(bare, weights_only=True)["gate"]
    original = torch.load(phantom_run[0] / "best_model.pth", weights_only=True)["gate"]
    assert refit["threshold"] == pytest.approx(original["threshold"], rel=1e-3)  # the same films, the same gate
    assert main(fit) == 2 and "already carries" in capsys.readouterr().err
    assert main([*fit, "--force"]) == 0
    capsys.readouterr()
    # damaged statistics: one line, no traceback
    state["gate"] = {**refit, "parts": [{**refit["parts"][0], "precision": torch.zeros(5, 5)}]}
    torch.save(state, bare)
    code, _, err = predict_rows(capsys, str(odd_films / "phantom.png"), "--checkpoint", str(bare))
    assert code == 2 and "gate's statistics are damaged" in err


@pytest.mark.slow
def test_too_few_validation_films_train_without_a_gate(tmp_path, capsys) -> None:
    data = make_nih_folder(tmp_path / "data", n_patients=12, per_patient=2, size=32)
    out = tmp_path / "run"
    assert main(["train", "--data_dir", str(data), "--output_dir", str(out), *TINY_TRAIN, "--num_epochs", "1",
                 "--on_bad_image", "skip"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "gate not fitted" in err and f"at least {gate.MIN_VALIDATION}" in err
    assert "gate" not in torch.load(out / "best_model.pth", weights_only=True)
    code = main(["fit_gate", "--checkpoint", str(out / "best_model.pth"), "--data_dir", str(data), "--device", "cpu",
                 "--no-progress", "--num_workers", "0", "--on_bad_image", "skip"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "not fitted" in err and "unchanged" in err


@pytest.mark.slow
def test_evaluate_reports_the_share_flagged_and_auroc_without_it(phantom_run, tmp_path) -> None:
    run, data = phantom_run
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(run / "best_model.pth"), "--data_dir", str(data), "--out", str(out),
                 "--no-progress", "--n_resamples", "100", "--num_workers", "0", "--device", "cpu"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    ood = metrics["ood"]
    assert 0 <= ood["share_flagged"] <= 0.2 and ood["n_flagged"] == round(ood["share_flagged"] * metrics["n_images"])
    assert ood["mean_auroc_all"] == pytest.approx(metrics["mean_auroc"], abs=1e-12)
    assert ood["mean_auroc_unflagged"] is not None and set(ood["per_class_unflagged"]) == set(metrics["per_class"])
    trained = json.loads((run / "metrics.json").read_text())["ood"]  # training's test step: the same scoring
    assert trained["n_flagged"] == ood["n_flagged"] and trained["mean_auroc_unflagged"] == ood["mean_auroc_unflagged"]
    assert "Films unlike the training data" in (out / "report.html").read_text()
