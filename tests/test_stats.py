"""Point estimates, the patient bootstrap, subgroups and Google's labels, against scikit-learn and by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

from cxr14.data.nih_download.packaged import resource
from cxr14.errors import UserError
from cxr14.judging.adjudicated import read_google_labels, score_adjudicated
from cxr14.judging.bootstrap import (
    BootstrapResult,
    format_intervals,
    image_weights,
    patient_bootstrap,
    resampled_aurocs,
)
from cxr14.judging.metrics import merge_json
from cxr14.judging.subgroups import demographic_groups, subgroup_aurocs
from cxr14.labels import NIH_LABELS


def cohort(n_patients: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets [N, 14], scores [N, 14], patients [N]): 1-10+ images per patient, rows shuffled.

    Each patient has a risk per finding shared by its images (so images of a patient are alike, as
    NIH's follow-ups are); scores are correlated with the labels. Patient ids are sparse, not 0..P-1.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.geometric(0.3, n_patients)
    owner = np.repeat(np.arange(n_patients), sizes)
    risk = rng.normal(size=(n_patients, len(NIH_LABELS)))[owner]
    targets = (rng.random(risk.shape) < expit(1.5 * risk - 1.5)).astype(np.uint8)
    scores = targets + 0.5 * risk + rng.normal(size=risk.shape)
    if ties:
        scores = np.round(scores, 1)
    order = rng.permutation(len(owner))
    return targets[order], scores[order], (owner * 7 + 1000)[order]


def test_point_estimates_equal_sklearn_with_ties_and_undefined_left_out() -> None:
    targets, scores, patients = cohort(150, 0, ties=True)
    targets[:, 13] = 0  # Hernia absent: undefined
    result = patient_bootstrap(targets, scores, patients, n_resamples=50, names=NIH_LABELS)
    for j, name in enumerate(NIH_LABELS[:13]):
        row = result.per_class[name]
        assert row.auroc == pytest.approx(roc_auc_score(targets[:, j], scores[:, j]), abs=1e-12)
        assert row.auprc == pytest.approx(average_precision_score(targets[:, j], scores[:, j]), abs=1e-12)
        assert row.n_pos == targets[:, j].sum() and row.prevalence == pytest.approx(targets[:, j].mean())
    hernia = result.per_class["Hernia"]
    assert (hernia.auroc, hernia.ci_low, hernia.ci_high, hernia.auprc, hernia.n_pos) == (None, None, None, None, 0)
    expected = np.mean([roc_auc_score(targets[:, j], scores[:, j]) for j in range(13)])
    assert result.mean_auroc == pytest.approx(expected, abs=1e-12)
    assert result.n_images == len(targets) and result.n_patients == 150
    as_json = result.to_json()
    assert as_json["per_class"]["Hernia"]["auroc"] is None and as_json["bootstrap"]["unit"] == "patient"
    table = format_intervals(result, "test").splitlines()
    assert "95% CI" in table[1] and table[-3].startswith("Hernia") and "n/a" in table[-3]
    assert "13 of 14 defined" in table[-2] and "150 patients" in table[-1]


def test_each_resample_equals_sklearn_on_the_explicitly_resampled_images() -> None:
    targets, scores, patients = cohort(60, 1, ties=True)
    targets[:, 12] = 0
    targets[patients == patients[0], 12] = 1  # 1 positive patient: about a third of the resamples miss it
    samples = resampled_aurocs(targets, scores, patients, n_resamples=20, seed=3)
    weights = image_weights(patients, n_resamples=20, seed=3)
    undefined_seen = 0
    for b in range(20):
        rows = np.repeat(np.arange(len(targets)), weights[b])  # each image as often as its patient was drawn
        for j in range(len(NIH_LABELS)):
            y = targets[rows, j]
            if y.min() == y.max():
                assert np.isnan(samples[b, j])
                undefined_seen += 1
            else:
                assert samples[b, j] == pytest.approx(roc_auc_score(y, scores[rows, j]), abs=1e-12)
    assert undefined_seen > 0  # the rare column did exercise the undefined case


def test_resampling_unit_is_the_patient() -> None:
    patients = cohort(80, 2)[2]
    weights = image_weights(patients, n_resamples=30, seed=0)
    for pid in np.unique(patients):
        mine = weights[:, patients == pid]
        assert (mine == mine[:, :1]).all()  # a patient's images move together
    first = np.unique(patients, return_index=True)[1]
    assert (weights[:, first].sum(axis=1) == 80).all()  # each resample draws as many patients as there are


def test_copying_every_image_changes_nothing_by_patient_but_shrinks_an_image_bootstrap() -> None:
    """Duplicated images add no information: the patient bootstrap sees that, an image bootstrap does not."""
    targets, scores, patients = cohort(120, 4)
    copies = 5
    big = [np.repeat(a, copies, axis=0) for a in (targets, scores, patients)]
    by_patient = resampled_aurocs(targets, scores, patients, n_resamples=200, seed=0)
    by_patient_copied = resampled_aurocs(*big, n_resamples=200, seed=0)
    np.testing.assert_allclose(by_patient_copied, by_patient, atol=1e-12)
    by_image_copied = resampled_aurocs(big[0], big[1], np.arange(len(big[0])), n_resamples=200, seed=0)
    ratio = np.nanstd(by_image_copied, axis=0) / np.nanstd(by_patient, axis=0)
    assert np.nanmedian(ratio) < 0.7, ratio  # image-level intervals are too narrow (about 1/sqrt(copies) here)


def test_interval_contains_the_point_and_narrows_with_more_patients() -> None:
    small = patient_bootstrap(*cohort(100, 5), n_resamples=300, seed=0, names=NIH_LABELS)
    large = patient_bootstrap(*cohort(1000, 6), n_resamples=300, seed=0, names=NIH_LABELS)
    for result in (small, large):
        for row in result.per_class.values():
            assert row.ci_low <= row.auroc <= row.ci_high
        assert result.mean_ci_low <= result.mean_auroc <= result.mean_ci_high
    assert large.mean_ci_high - large.mean_ci_low < 0.6 * (small.mean_ci_high - small.mean_ci_low)

    def width(result: BootstrapResult, name: str) -> float:
        return result.per_class[name].ci_high - result.per_class[name].ci_low

    ratios = [width(large, name) / width(small, name) for name in NIH_LABELS]
    assert np.median(ratios) < 0.6, ratios


def test_mean_interval_is_over_the_findings_defined_in_each_resample() -> None:
    targets, scores, patients = cohort(60, 7)
    targets[:, 12] = 0
    targets[np.isin(patients, np.unique(patients)[:2]), 12] = 1
    result = patient_bootstrap(targets, scores, patients, n_resamples=200, seed=9, level=0.9, names=NIH_LABELS)
    samples = resampled_aurocs(targets, scores, patients, n_resamples=200, seed=9)
    assert np.isnan(samples[:, 12]).any()
    low, high = np.quantile(np.nanmean(samples, axis=1), [0.05, 0.95])
    assert (result.mean_ci_low, result.mean_ci_high) == pytest.approx((low, high), abs=1e-12)


def test_bootstrap_is_deterministic_for_a_seed_whatever_the_chunking() -> None:
    targets, scores, patients = cohort(90, 8)
    a = resampled_aurocs(targets, scores, patients, n_resamples=64, seed=5)
    b = resampled_aurocs(targets, scores, patients, n_resamples=64, seed=5, chunk_bytes=1)  # one resample a chunk
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert not np.allclose(a, resampled_aurocs(targets, scores, patients, n_resamples=64, seed=6))


def test_demographic_groups_bands_and_unknowns() -> None:
    sex = np.array(["M", "F", "F", "M", "O", "m"])
    age = np.array([5, 19, 20, 79, 80, 412])  # 412: a typing error in the 2017 CSV
    view = np.array(["PA", "AP", "AP", "PA", "AP", "LL"])
    groups = demographic_groups(sex=sex, age=age, view=view)
    assert groups["sex"]["M"].tolist() == [True, False, False, True, False, True]
    assert groups["sex"]["unknown"].tolist() == [False, False, False, False, True, False]
    assert [int(np.flatnonzero(groups["age"][b])[0]) for b in ("<20", "20-39", "60-79", "80+")] == [0, 2, 3, 4]
    assert groups["age"]["<20"].sum() == 2 and groups["age"]["40-59"].sum() == 0
    assert groups["age"]["unknown"].tolist() == [False] * 5 + [True]
    assert set(groups["view"]) == {"PA", "AP", "unknown"}
    for masks in groups.values():
        assert (np.sum(list(masks.values()), axis=0) == 1).all()  # every image in exactly one group
    assert "unknown" not in demographic_groups(sex=["M", "F"])["sex"]


def test_subgroups_reuse_the_bootstrap_and_gate_tiny_counts() -> None:
    targets, scores, patients = cohort(200, 10)
    sex = np.where(patients % 2 == 0, "M", "F")
    targets[:, 13] = 0
    targets[np.flatnonzero(sex == "F")[:3], 13] = 1  # 3 positive women: too few for an AUROC
    result = subgroup_aurocs(targets, scores, patients, demographic_groups(sex=sex), n_resamples=100, seed=2,
                             names=NIH_LABELS)
    women = sex == "F"
    alone = patient_bootstrap(targets[women], scores[women], patients[women], 100, 2, names=NIH_LABELS,
                              min_positives=10)
    assert result.groups["sex"]["F"] == alone
    assert result.groups["sex"]["F"].per_class["Hernia"].auroc is None
    assert result.groups["sex"]["F"].n_images == women.sum()
    assert result.groups["sex"]["F"].n_patients == len(np.unique(patients[women]))
    assert result.to_json()["groups"]["sex"]["M"]["per_class"]["Atelectasis"]["ci_low"] is not None


def write_google_csv(path: Path, rows: list[tuple[str, int, str, str, str]]) -> None:
    """Google's layout: (image, patient, Pneumothorax, Nodule or mass, Set Id)."""
    header = (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Fracture,Pneumothorax,Airspace opacity,"
        "Nodule or mass,Set Id"
    )
    lines = [f"{n},No Finding,0,{p},50,M,PA,2500,2048,0.14,0.14,NO,{px},NO,{nm},{s}" for n, p, px, nm, s in rows]
    path.write_text("\n".join([header, *lines]) + "\n")


def test_google_labels_scored_beside_nlp_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 80
    names = np.array([f"{i // 2:08d}_{i % 2:03d}.png" for i in range(n)])
    probs = rng.random((n, len(NIH_LABELS)))
    nlp = (rng.random((n, len(NIH_LABELS))) < 0.3).astype(np.uint8)
    reads = rng.random((n, 2)) < 0.4
    rows = [
        (names[i], i // 2, "YES" if reads[i, 0] else "NO", "YES" if reads[i, 1] else "NO", "val" if i < 10 else "test")
        for i in range(n - 5)  # the last 5 scored images are not in Google's table; the first 10 are its val set
    ]
    rows.append(("99999999_000.png", 99999999, "YES", "NO", "test"))  # in the table, not scored
    write_google_csv(tmp_path / "g.csv", rows)
    result = score_adjudicated(names, probs, nlp, NIH_LABELS, read_google_labels(tmp_path / "g.csv"), n_resamples=50)
    used = slice(10, n - 5)
    px, nm = NIH_LABELS.index("Pneumothorax"), [NIH_LABELS.index("Nodule"), NIH_LABELS.index("Mass")]
    pneumothorax, nodule = result.per_finding["Pneumothorax"], result.per_finding["Nodule or mass"]
    assert pneumothorax.n_images == n - 15 and pneumothorax.n_patients == len({i // 2 for i in range(10, n - 5)})
    assert pneumothorax.radiologists.auroc == pytest.approx(roc_auc_score(reads[used, 0], probs[used, px]))
    assert pneumothorax.nlp.auroc == pytest.approx(roc_auc_score(nlp[used, px], probs[used, px]))
    both = probs[used][:, nm].max(axis=1)
    assert nodule.radiologists.auroc == pytest.approx(roc_auc_score(reads[used, 1], both))
    assert nodule.nlp.auroc == pytest.approx(roc_auc_score(nlp[used][:, nm].max(axis=1), both))
    assert nodule.radiologists.n_pos == reads[used, 1].sum()
    assert result.to_json()["per_finding"]["Pneumothorax"]["radiologists"]["ci_low"] is not None
    assert score_adjudicated(names[:5], probs[:5], nlp[:5], NIH_LABELS, read_google_labels(tmp_path / "g.csv")) is None


def test_google_file_that_is_not_google_labels_is_a_user_error(tmp_path: Path) -> None:
    write_google_csv(tmp_path / "g.csv", [("a.png", 1, "YES", "maybe", "test")])
    with pytest.raises(UserError, match="YES/NO"):
        read_google_labels(tmp_path / "g.csv")
    (tmp_path / "h.csv").write_text("Image Index,Patient ID\na.png,1\n")
    with pytest.raises(UserError, match="lacks the column"):
        read_google_labels(tmp_path / "h.csv")
    with pytest.raises(UserError, match="Could not read"):
        read_google_labels(tmp_path / "missing.csv.gz")


def test_real_google_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "google2019_nih-chest-xray-labels.csv.gz"  # Google's file, as the package ships it
    path.write_bytes(resource(path.name).read_bytes())
    google = read_google_labels(path)
    assert len(google) == 4376 and (google["Set Id"] == "test").sum() == 1962
    assert google["Pneumothorax"].sum() == 238 and google["Nodule or mass"].sum() == 605


def test_non_finite_scores_and_swapped_arguments_are_named() -> None:
    targets, scores, patients = cohort(20, 12)
    scores[3, 2] = np.nan
    with pytest.raises(UserError, match="NaN or infinite"):
        patient_bootstrap(targets, scores, patients, n_resamples=10, names=NIH_LABELS)
    with pytest.raises(ValueError, match="other way round"):
        patient_bootstrap(np.nan_to_num(scores), targets, patients, n_resamples=10, names=NIH_LABELS)


def test_merge_json_joins_tables_by_finding_and_refuses_conflicts() -> None:
    a = {"mean_auroc": 0.8, "per_class": {"Mass": {"auroc": 0.7}}}
    b = {"split": "test", "per_class": {"Mass": {"threshold": 0.3}}}
    merged = {"mean_auroc": 0.8, "split": "test", "per_class": {"Mass": {"auroc": 0.7, "threshold": 0.3}}}
    assert merge_json(a, b) == merged
    with pytest.raises(ValueError, match="twice"):
        merge_json(a, {"per_class": {"Mass": {"auroc": 0.6}}})
