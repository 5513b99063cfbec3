"""`cxr14 compare` and ensembles: the statistics against plain implementations, then the real CLI on two models
trained on phantoms (compare, reuse, --intersect, an ensemble evaluated, predicted and served, bad input)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxr14.cli import main
from cxr14.judging.bootstrap import paired_resamples, patient_codes, resample_counts
from cxr14.judging.delong import delong, holm
from cxr14.labels import NIH_LABELS

# --- the statistics ---------------------------------------------------------------------------------------------


def delong_by_definition(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(B - A, its DeLong variance) from the pairwise kernel psi over every positive-negative pair: O(m x n)."""
    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = s[y == 1][:, None], s[y == 0][None, :]
        psi = (pos > neg) + 0.5 * (pos == neg)
        return psi.mean(axis=1), psi.mean(axis=0)

    (v10_a, v01_a), (v10_b, v01_b) = components(a), components(b)
    m, n = len(v10_a), len(v01_a)
    s10, s01 = np.cov(np.stack([v10_a, v10_b])), np.cov(np.stack([v01_a, v01_b]))
    c = np.array([-1.0, 1.0])
    return float(v10_b.mean() - v10_a.mean()), float(c @ (s10 / m + s01 / n) @ c)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_equals_its_definition_ties_included(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(120) < 0.3).astype(int)
    a = np.round(rng.random(120) + 0.5 * y, 1)  # rounded: many ties
    b = np.round(a + rng.normal(0, 0.3, 120), 1)
    got = delong(y, a, b)
    diff, var = delong_by_definition(y, a, b)
    assert got.auroc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert got.auroc_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert got.difference == pytest.approx(diff, abs=1e-12) and got.std_error**2 == pytest.approx(var, rel=1e-9)
    assert 0 <= got.p_value <= 1
    same = delong(y, a, a)
    assert same.difference == 0 and same.p_value == 1.0


def test_holm_by_hand() -> None:
    # four tests (NaN is not one): 0.01 x 4 = 0.04; 0.03 x 3 = 0.09; 0.04 x 2 = 0.08, raised to 0.09 (the
    # step-down keeps them in order); 0.9 x 1
    got = holm([0.01, 0.04, 0.03, np.nan, 0.9])
    want = [0.04, 0.09, 0.09, np.nan, 0.9]
    np.testing.assert_allclose(got, want)
    assert np.isnan(holm([np.nan])).all()


def test_paired_bootstrap_resamples_the_same_patients_for_both_models() -> None:
    rng = np.random.default_rng(3)
    patients = rng.integers(0, 40, 200)
    y = (rng.random((200, 2)) < 0.3).astype(np.uint8)
    a, b = rng.random((200, 2)) + y * 0.3, rng.random((200, 2)) + y * 0.6
    samples_a, samples_b = paired_resamples(y, [a, b], patients, n_resamples=5, seed=7)
    codes, n_patients = patient_codes(patients)
    counts = resample_counts(n_patients, 5, 7)
    for r in range(5):
        rows = np.repeat(np.arange(200), counts[r][codes])  # the resample made explicit
        for j in range(2):
            want = roc_auc_score(y[rows, j], b[rows, j]) - roc_auc_score(y[rows, j], a[rows, j])
            assert samples_b[r, j] - samples_a[r, j] == pytest.approx(want, abs=1e-12)


# --- the real CLI on two phantom models --------------------------------------------------------------------------

FAST = ("--no-progress", "--n_resamples", "300", "--num_workers", "0", "--device", "cpu")


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def evaluations(phantom_run, second_run, tmp_path_factory) -> dict[str, Path]:
    """`cxr14 evaluate` of each model, and of their ensemble, on the phantom test split."""
    _, data = phantom_run
    root = tmp_path_factory.mktemp("evaluations")
    models = {"a": phantom_run[0] / "best_model.pth", "b": second_run / "best_model.pth"}
    models["ens"] = f"{models['a']},{models['b']}"
    for key, ckpt in models.items():
        assert main(["evaluate", "--checkpoint", str(ckpt), "--data_dir", str(data), "--out", str(root / key),
                     *FAST]) == 0  # fmt: skip
    return {k: root / k for k in models}


@pytest.mark.slow
def test_compare_two_checkpoints(phantom_run, second_run, evaluations, tmp_path, capsys) -> None:
    _, data = phantom_run
    a, b = phantom_run[0] / "best_model.pth", second_run / "best_model.pth"
    out = tmp_path / "cmp"
    code, printed, err = run(capsys, "compare", str(a), str(b), "--data_dir", str(data), "--out", str(out), *FAST)
    assert code == 0, err
    result = json.loads((out / "comparison.json").read_text())
    auroc_a = json.loads((evaluations["a"] / "metrics.json").read_text())
    auroc_b = json.loads((evaluations["b"] / "metrics.json").read_text())
    (c,) = result["comparisons"]
    assert result["n_images"] == auroc_a["n_images"] and c["a"] == str(a) and c["b"] == str(b)
    for name in NIH_LABELS:
        row, want = c["per_class"][name], auroc_b["per_class"][name]["auroc"] - auroc_a["per_class"][name]["auroc"]
        assert row["difference"] == pytest.approx(want, abs=1e-9)
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
        assert 0 <= row["p_value"] <= row["p_holm"] <= 1
    mean = c["mean"]
    assert mean["difference"] == pytest.approx(auroc_b["mean_auroc"] - auroc_a["mean_auroc"], abs=1e-9)
    assert mean["ci_low"] <= mean["difference"] <= mean["ci_high"] and 0 <= mean["p_value"] <= 1
    assert "p DeLong" in printed and "mean" in printed
    rows = pd.read_csv(out / "comparison.csv")
    assert len(rows) == len(NIH_LABELS) + 1 and list(rows["finding"])[-1] == "mean"
    html = (out / "report.html").read_text()
    assert "Forest plot" in html and "data:image/png;base64," in html


@pytest.mark.slow
def test_compare_reuses_evaluation_folders_and_refuses_other_images(evaluations, tmp_path, capsys) -> None:
    code, _, err = run(capsys, "compare", str(evaluations["a"]), str(evaluations["b"]), "--out",
                       str(tmp_path / "reused"), "--n_resamples", "300")  # fmt: skip
    assert code == 0, err
    assert "predictions reused from" in err and "scored on" not in err  # no model was run
    result = json.loads((tmp_path / "reused" / "comparison.json").read_text())
    assert [m["how"].startswith("test predictions reused") for m in result["models"]] == [True, True]
    # B's predictions cut short (and no checkpoint beside them): refused with the counts, or --intersect
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(evaluations["b"] / "metrics.json", cut / "metrics.json")
    metrics = json.loads((cut / "metrics.json").read_text())
    metrics["model"]["checkpoint"] = str(tmp_path / "gone.pth")
    (cut / "metrics.json").write_text(json.dumps(metrics))
    frame = pd.read_csv(evaluations["b"] / "test_predictions.csv", dtype={"image": str})
    frame.iloc[: len(frame) - 25].to_csv(cut / "test_predictions.csv", index=False)
    code, _, err = run(capsys, "compare", str(evaluations["a"]), str(cut), "--out", str(tmp_path / "x"))
    assert code == 2 and "not of the same images" in err and f"{len(frame) - 25:,} common" in err
    assert "--intersect" in err
    code, _, err = run(capsys, "compare", str(evaluations["a"]), str(cut), "--intersect", "--out",
                       str(tmp_path / "both"), "--n_resamples", "300")  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "both" / "comparison.json").read_text())
    assert result["n_images"] == len(frame) - 25 and result["alignment"]["intersect"] is True
    # a finding only one model has is left out, named; no finding in common is refused
    frame.drop(columns=["Hernia", "true_Hernia"]).to_csv(cut / "test_predictions.csv", index=False)
    code, _, err = run(capsys, "compare", str(evaluations["a"]), str(cut), "--out", str(tmp_path / "y"),
                       "--n_resamples", "300")  # fmt: skip
    assert code == 0 and "left out: Hernia" in err
    renamed = frame.rename(columns={**{k: f"x{k}" for k in NIH_LABELS},
                                    **{f"true_{k}": f"true_x{k}" for k in NIH_LABELS}})  # fmt: skip
    renamed.to_csv(cut / "test_predictions.csv", index=False)
    code, _, err = run(capsys, "compare", str(evaluations["a"]), str(cut), "--out", str(tmp_path / "z"))
    assert code == 2 and "share no finding" in err


@pytest.mark.slow
def test_compare_needs_two_models_and_data_for_checkpoints(phantom_run, capsys) -> None:
    code, _, err = run(capsys, "compare", str(phantom_run[0] / "best_model.pth"))
    assert code == 2 and "needs two or more models" in err
    code, _, err = run(capsys, "compare", str(phantom_run[0] / "best_model.pth"), str(phantom_run[0] / "last.pth"))
    assert code == 2 and "pass --data_dir" in err


@pytest.mark.slow
def test_ensemble_evaluated_equals_the_mean_of_its_members(evaluations) -> None:
    pa = pd.read_csv(evaluations["a"] / "test_predictions.csv", dtype={"image": str})
    pb = pd.read_csv(evaluations["b"] / "test_predictions.csv", dtype={"image": str})
    pe = pd.read_csv(evaluations["ens"] / "test_predictions.csv", dtype={"image": str})
    assert list(pa["image"]) == list(pb["image"]) == list(pe["image"])
    metrics = json.loads((evaluations["ens"] / "metrics.json").read_text())
    for name in NIH_LABELS:
        mean = (pa[name] + pb[name]) / 2
        np.testing.assert_allclose(pe[name], mean, atol=1e-6)
        assert metrics["per_class"][name]["auroc"] == pytest.approx(roc_auc_score(pe[f"true_{name}"], mean), abs=1e-6)
    manifest = json.loads((evaluations["ens"] / "ensemble.json").read_text())
    assert len(manifest["members"]) == 2 and all(len(m["sha256"]) == 64 for m in manifest["members"])
    assert "validation split" in manifest["thresholds_chosen_on"] and len(manifest["thresholds"]) == len(NIH_LABELS)
    assert metrics["model"]["model"].startswith("ensemble of convnext_atto@64 + convnext_atto@64")


@pytest.mark.slow
def test_ensemble_predicted_and_served(phantom_run, second_run, evaluations, tmp_path, capsys) -> None:
    films = tmp_path / "films"
    films.mkdir()
    for p in sorted((phantom_run[1] / "images").glob("*.png"))[:4]:
        shutil.copy(p, films / p.name)
    rows = {}
    for key, ckpt in (("a", phantom_run[0] / "best_model.pth"), ("b", second_run / "best_model.pth"),
                      ("ens", evaluations["ens"] / "ensemble.json")):  # fmt: skip
        code, out, err = run(capsys, "predict", str(films), "--checkpoint", str(ckpt), "--json", "--device", "cpu",
                             "--no-progress", "--num_workers", "0")  # fmt: skip
        assert code == 0, err
        rows[key] = [json.loads(line) for line in out.splitlines()]
    thresholds = json.loads((evaluations["ens"] / "ensemble.json").read_text())["thresholds"]
    for ra, rb, re in zip(rows["a"], rows["b"], rows["ens"], strict=True):
        for name in NIH_LABELS:
            mean = (ra["probabilities"][name] + rb["probabilities"][name]) / 2
            assert re["probabilities"][name] == pytest.approx(mean, abs=1.01e-6)
        pairs = zip(NIH_LABELS, thresholds, strict=True)
        called = [k for k, t in pairs if t is not None and re["probabilities"][k] >= t]
        assert re["findings"] == called
    # served: the same rows from the web API, and a heatmap (the members' mean)
    from cxr14.config import ServeConfig
    from cxr14.model.loading import load_model
    from cxr14.using.serve import runner
    from cxr14.using.serve.app import create_app

    spec = evaluations["ens"] / "ensemble.json"
    model = load_model(spec, "cpu")
    with runner.in_thread(create_app(model, ServeConfig(checkpoint=spec))) as url, httpx.Client(base_url=url,
                                                                                               timeout=60) as c:
        card = c.get("/api/model").json()
        assert card["model"].startswith("ensemble of") and card["heatmaps"] is True
        first = sorted(films.iterdir())[0]
        reply = c.post("/api/predict?cam=Cardiomegaly", files={"file": (first.name, first.read_bytes())})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        for name in NIH_LABELS:
            assert body["probabilities"][name] == pytest.approx(rows["ens"][0]["probabilities"][name], abs=1.01e-6)
        assert body["heatmap"].startswith("data:image/png;base64,")


@pytest.mark.slow
def test_ensemble_manifest_checks_its_members(phantom_run, evaluations, tmp_path, capsys) -> None:
    manifest = json.loads((evaluations["ens"] / "ensemble.json").read_text())
    manifest["members"][1]["sha256"] = "0" * 64
    bad = evaluations["ens"] / "tampered.json"
    bad.write_text(json.dumps(manifest))
    code, _, err = run(capsys, "predict", str(phantom_run[1] / "images"), "--checkpoint", str(bad), "--device", "cpu")
    assert code == 2 and "sha256" in err and "member 2" in err
    code, _, err = run(capsys, "predict", str(phantom_run[1] / "images"), "--checkpoint",
                       str(phantom_run[0] / "best_model.pth") + ",", "--device", "cpu")  # fmt: skip
    assert code == 2 and "two or more checkpoints" in err
    code, _, err = run(capsys, "export", "--checkpoint", str(evaluations["ens"] / "ensemble.json"), "--out",
                       str(tmp_path / "export"))  # fmt: skip
    assert code == 2 and "is an ensemble" in err and not (tmp_path / "export").exists()
