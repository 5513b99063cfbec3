"""Other datasets: each layout written as a phantom and trained on through the real CLI; a csv dataset with three
labels of its own trained, evaluated, predicted, served and exported; fine-tuning with --init; an NIH model
scored on a CheXpert folder; unknown labels masked; and the bad input each reader names by file, row and column."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from cxr14.cli import main
from cxr14.labels import match
from cxr14.training.loss import make_loss
from tests.conftest import run_cli

TINY = ("--model", "convnext_atto", "--image_size", "32", "--batch_size", "8", "--num_workers", "0", "--device",
        "cpu", "--no-progress", "--num_epochs", "1", "--max_train_samples", "0", "--max_test_samples", "0")  # fmt: skip


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """A phantom folder in each layout (60 patients, 48 px films)."""
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in LAYOUTS:
        out[layout] = root / layout
        assert main(["phantom", "--out", str(out[layout]), "--layout", layout, "--n_patients", "60", "--size", "48",
                     "--workers", "2", "--no-progress"]) == 0  # fmt: skip
    return out


#: Every layout but NIH's (the rest of the suite trains on that one).
LAYOUTS = ("csv", "folder", "chexpert", "mimic", "padchest", "vindr")


def data_args(layout: str, folder: Path) -> list[str]:
    if layout == "csv":
        return ["--dataset", "csv", "--csv", str(folder / "dataset.csv")]
    extra = {"padchest": ["--labels", "cardiomegaly,pleural effusion,atelectasis"],
             "folder": ["--patient_pattern", "nih"]}.get(layout, [])  # fmt: skip
    return ["--dataset", layout, "--data_dir", str(folder), *extra]


# --- the pieces --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["focal", "bce", "asl"])
def test_unknown_labels_add_nothing_to_any_loss(name: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 5, requires_grad=True)
    targets = (torch.rand(8, 5) < 0.3).float()
    unknown = torch.rand(8, 5) < 0.3
    masked = torch.where(unknown, torch.full_like(targets, -1), targets)
    loss = make_loss(name)
    known_only = loss(logits[~unknown].view(-1, 1), targets[~unknown].view(-1, 1))
    got = loss(logits, masked)
    assert float(got) == pytest.approx(float(known_only), rel=1e-6)
    (grad,) = torch.autograd.grad(got, logits)
    assert float(grad[unknown].abs().max()) == 0.0  # an unknown label has no gradient at all


def test_label_map_exact_and_approximate() -> None:
    nih = ("Atelectasis", "Effusion", "Mass", "Nodule", "Hernia")
    chexpert = ("Pleural Effusion", "Lung Lesion", "Atelectasis", "Fracture")
    exact = match(nih, chexpert)
    assert [(d, [nih[j] for j in m], k) for d, m, k in exact] == [("Pleural Effusion", ["Effusion"], "exact"),
                                                                  ("Atelectasis", ["Atelectasis"], "exact")]
    approx = {d: ([nih[j] for j in m], k) for d, m, k in match(nih, chexpert, approximate=True)}
    assert approx["Lung Lesion"] == (["Mass", "Nodule"], "approximate") and "Fracture" not in approx


# --- every layout, through the real CLI --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_train_on_each_layout(layout: str, layouts, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", *data_args(layout, layouts[layout]), "--output_dir", str(out), *TINY)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    expected = {"csv": 3, "folder": 1, "chexpert": 14, "mimic": 14, "padchest": 3, "vindr": 28}[layout]
    assert len(metrics["labels"]) == expected == len(torch.load(out / "best_model.pth", weights_only=True)["labels"])
    assert metrics["data"]["dataset"] == layout
    unknown = sum(r["n_unknown"] for r in metrics["per_class"].values())
    if layout == "chexpert":  # its own split kept; valid.csv (the test split) is a consensus: nothing unknown
        assert "split: the dataset's own" in err and unknown == 0
    if layout == "mimic":  # its own split kept; its test studies have blank and uncertain labels: counted
        assert "split: the dataset's own" in err and unknown > 0
    if layout == "vindr":
        assert "names no patients" in err
    if layout == "folder":  # train/ and test/ as the split; NORMAL the negative class; patients from NIH's names
        assert metrics["labels"] == ["ABNORMAL"] and "split: the dataset's own" in err
        assert "as the data names them" in metrics["data"]["patients"]


@pytest.fixture(scope="module")
def csv_run(layouts, tmp_path_factory) -> Path:
    """A model of the csv layout's three labels (Cardiomegaly, Effusion, Opacity), trained at 48 px."""
    out = tmp_path_factory.mktemp("csv_run") / "run"
    args = [*data_args("csv", layouts["csv"]), "--output_dir", str(out), *TINY, "--image_size", "48",
            "--num_epochs", "2"]  # fmt: skip
    assert main(["train", *args]) == 0
    return out


@pytest.mark.slow
def test_csv_dataset_evaluated_with_masked_aurocs(csv_run, tmp_path) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(csv_run / "best_model.pth"), "--out", str(out), "--no-progress",
                 "--num_workers", "0", "--n_resamples", "200", "--device", "cpu"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["Cardiomegaly", "Effusion", "Opacity"]
    pred = pd.read_csv(out / "test_predictions.csv")
    unknown = 0
    for name in metrics["labels"]:
        known = pred[f"true_{name}"] >= 0
        unknown += int((~known).sum())
        assert metrics["per_class"][name]["auroc"] == pytest.approx(
            roc_auc_score(pred.loc[known, f"true_{name}"], pred.loc[known, name]), abs=1e-9)
        assert metrics["per_class"][name]["n_unknown"] == int((~known).sum())
    assert unknown > 0  # the layout has -1 and blank cells: they were left out, not read as negatives
    assert "Unknown labels" in (out / "report.html").read_text()


@pytest.mark.slow
def test_csv_model_predicted_served_and_exported(csv_run, layouts, tmp_path, capsys) -> None:
    films = sorted((layouts["csv"] / "images").glob("*.png"))[:3]
    code, out, err = run(capsys, "predict", *map(str, films), "--checkpoint", str(csv_run / "best_model.pth"),
                         "--device", "cpu", "--no-progress", "--num_workers", "0")  # fmt: skip
    assert code == 0, err
    header = out.splitlines()[0].split(",")
    assert header[1:4] == ["Cardiomegaly", "Effusion", "Opacity"] and header[4] == "findings"
    code, _, err = run(capsys, "export", "--checkpoint", str(csv_run / "best_model.pth"), "--out", str(tmp_path / "x"))
    assert code == 0, err
    config = json.loads((tmp_path / "x" / "hf" / "config.json").read_text())
    assert config["label_names"] == ["Cardiomegaly", "Effusion", "Opacity"] and config["num_classes"] == 3
    code, onnx_out, err = run(capsys, "predict", str(films[0]), "--checkpoint", str(tmp_path / "x" / "onnx" /
                              "model.onnx"), "--json", "--no-progress", "--num_workers", "0")  # fmt: skip
    assert code == 0 and list(json.loads(onnx_out)["probabilities"]) == ["Cardiomegaly", "Effusion", "Opacity"]

    from cxr14.config import ServeConfig
    from cxr14.model.loading import load_model
    from cxr14.using.serve import runner
    from cxr14.using.serve.app import create_app

    model = load_model(csv_run / "best_model.pth", "cpu")
    with runner.in_thread(create_app(model, ServeConfig(checkpoint=csv_run / "best_model.pth"))) as url, \
            httpx.Client(base_url=url, timeout=60) as client:  # fmt: skip
        card = client.get("/api/model").json()
        assert list(card["thresholds"]) == ["Cardiomegaly", "Effusion", "Opacity"]
        body = client.post("/api/predict?cam=Opacity", files={"file": (films[0].name, films[0].read_bytes())})
        assert body.status_code == 200 and list(body.json()["probabilities"]) == ["Cardiomegaly", "Effusion", "Opacity"]
        refused = client.post("/api/predict?cam=Hernia", files={"file": (films[0].name, films[0].read_bytes())})
        assert refused.status_code == 400 and "Opacity" in refused.json()["detail"]


@pytest.mark.slow
def test_nih_model_fine_tuned_on_a_csv_dataset(phantom_run, layouts, tmp_path, capsys) -> None:
    nih = phantom_run[0] / "best_model.pth"
    out = tmp_path / "ft"
    args = [*data_args("csv", layouts["csv"]), "--init", str(nih), "--output_dir", str(out), *TINY,
            "--image_size", "64"]  # fmt: skip
    code, _, err = run(capsys, "train", *args)
    assert code == 0, err
    assert "head rows kept for Cardiomegaly, Effusion; new for Opacity" in err
    assert json.loads((out / "config.json").read_text())["init"] == {
        "from": str(nih), "kept": {"Cardiomegaly": "Cardiomegaly", "Effusion": "Effusion"}, "new": ["Opacity"]}
    # The rows are the NIH model's own before any step: check the mechanism directly.
    from cxr14.model.create import create_model
    from cxr14.training.finetune import initialise

    model, _ = create_model("convnext_atto", False, None, 64, 3)
    fresh = model.get_classifier().weight.detach().clone()
    initialise(model, nih, "convnext_atto", 64, ("Cardiomegaly", "Effusion", "Opacity"))
    source = torch.load(nih, weights_only=True)
    head = next(k for k in source["model"] if k.endswith("fc.weight"))
    weight = model.get_classifier().weight.detach()
    labels = source["labels"]
    assert torch.equal(weight[0], source["model"][head][labels.index("Cardiomegaly")])
    assert torch.equal(weight[1], source["model"][head][labels.index("Effusion")])
    assert torch.equal(weight[2], fresh[2])  # a new label's row starts as a fresh head's
    stem = next(k for k in source["model"] if k.startswith("stem"))
    assert torch.equal(model.state_dict()[stem], source["model"][stem])  # the backbone came over
    code, _, err = run(capsys, "train", *data_args("csv", layouts["csv"]), "--init", str(nih), "--output_dir",
                       str(tmp_path / "bad"), *TINY)  # 32 px: another size  # fmt: skip
    assert code == 2 and "at 64 px" in err and "--image_size 64" in err
    code, _, err = run(capsys, "train", *data_args("csv", layouts["csv"]), "--init", str(nih), "--output_dir",
                       str(tmp_path / "bad2"), *TINY, "--model", "convnext_femto", "--image_size", "64")  # fmt: skip
    assert code == 2 and "is convnext_atto at 64 px" in err


@pytest.mark.slow
def test_nih_model_scored_on_a_chexpert_folder(phantom_run, layouts, tmp_path) -> None:
    nih = phantom_run[0] / "best_model.pth"
    for approximate, out in ((False, tmp_path / "exact"), (True, tmp_path / "approx")):
        args = ["evaluate", "--checkpoint", str(nih), "--dataset", "chexpert", "--data_dir", str(layouts["chexpert"]),
                "--out", str(out), "--no-progress", "--n_resamples", "100", "--num_workers", "0", "--device", "cpu"]
        assert main([*args, *(["--approximate"] if approximate else [])]) == 0
    exact = json.loads((tmp_path / "exact" / "metrics.json").read_text())
    mapped = {m["data"]: (m["model"], m["how"]) for m in exact["label_map"]["mapped"]}
    assert mapped["Pleural Effusion"] == (["Effusion"], "exact") and "Lung Lesion" not in mapped
    assert exact["labels"] == [m["data"] for m in exact["label_map"]["mapped"]]  # only the mapped are scored
    assert "Support Devices" in exact["label_map"]["left_out"]
    assert "Hernia" in exact["label_map"]["model_findings_unused"]
    approx = json.loads((tmp_path / "approx" / "metrics.json").read_text())
    lesion = next(m for m in approx["label_map"]["mapped"] if m["data"] == "Lung Lesion")
    assert lesion == {"data": "Lung Lesion", "model": ["Mass", "Nodule"], "how": "approximate"}
    assert approx["per_class"]["Lung Lesion"]["threshold"] is None  # no threshold was chosen for this pair


# --- bad input ---------------------------------------------------------------------------------------------------


def write_csv(folder: Path, text: str) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png", "c.png", "d.png"):
        (folder / "images" / name).write_bytes(b"")
    path = folder / "data.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,patient,A\nimages/a.png,1,1\nimages/b.png,2,2\n", "row 3, column 'A': '2' is not a label"),
        ("path,patient,A\nimages/a.png,1,1\nimages/b.png,2,yes\n", "row 3, column 'A': 'yes' is not a label"),
        ("path,patient,A\nimages/a.png,1,0.5\nimages/b.png,2,1\n", "row 2, column 'A': '0.5' is not a label"),
        ("path,patient,A\n../x.png,1,1\nimages/b.png,2,0\n", "row 2, column 'path': '../x.png' is not a file inside"),
        ("path,patient,A\nimages/a.png,1,1\nimages/a.png,2,0\n", "is listed twice (also row 2)"),
        ("path,patient,split,A\nimages/a.png,1,train,1\nimages/b.png,1,test,0\n", "patient '1' is in the train split"),
        ("path,patient\nimages/a.png,1\n", "has no label column"),
        ("file,A\nimages/a.png,1\n", "has no `path` column"),
        ("path,patient,split,A\nimages/a.png,1,train,0\nimages/b.png,2,train,0\nimages/c.png,3,test,1\n"
         "images/d.png,4,val,1\n", "the label 'A' has no positive among the 2 training images"),
    ],
)
def test_bad_csv_datasets_are_named_by_row_and_column(text: str, message: str, tmp_path, capsys) -> None:
    path = write_csv(tmp_path, text)
    code, _, err = run(capsys, "train", "--dataset", "csv", "--csv", str(path), "--output_dir",
                       str(tmp_path / "run"), *TINY)  # fmt: skip
    assert code == 2 and message in err and str(path) in err, err
    assert not (tmp_path / "run").exists()


def test_layout_of_another_dataset_is_named(layouts, tmp_path, capsys) -> None:
    code, _, err = run(capsys, "train", "--dataset", "chexpert", "--data_dir", str(layouts["mimic"]), "--output_dir",
                       str(tmp_path / "run"), *TINY)  # fmt: skip
    assert code == 2 and "looks like MIMIC-CXR-JPG's layout" in err and "--dataset mimic" in err
    code, _, err = run(capsys, "train", "--data_dir", str(layouts["vindr"]), "--output_dir", str(tmp_path / "r2"),
                       *TINY)  # fmt: skip
    assert code == 2 and "--dataset vindr" in err


def test_padchest_needs_labels_and_a_list_per_cell(layouts, tmp_path, capsys) -> None:
    code, _, err = run(capsys, "train", "--dataset", "padchest", "--data_dir", str(layouts["padchest"]),
                       "--output_dir", str(tmp_path / "r"), *TINY)  # fmt: skip
    assert code == 2 and "choose the ones to train on with --labels" in err
    broken = tmp_path / "padchest"
    shutil.copytree(layouts["padchest"], broken)
    source = next(broken.glob("PADCHEST_*.csv.gz"))
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    frame.loc[3, "Labels"] = "cardiomegaly; effusion"
    source.unlink()
    frame.to_csv(broken / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv", index=False)
    code, _, err = run(capsys, "train", "--dataset", "padchest", "--data_dir", str(broken), "--labels",
                       "cardiomegaly", "--output_dir", str(tmp_path / "r2"), *TINY)  # fmt: skip
    assert code == 2 and "row 5, column 'Labels'" in err and "is not a list of findings" in err


def test_uncertain_labels_follow_the_policy(layouts) -> None:
    from cxr14.config import TrainConfig
    from cxr14.data.pipeline.loaders import read_metadata

    counts = {}
    for policy in ("ignore", "zeros", "ones"):
        cfg = TrainConfig(dataset="chexpert", data_dir=layouts["chexpert"], uncertain=policy, views="all")
        meta = read_metadata(cfg)
        counts[policy] = ((meta.labels == -1).sum(), (meta.labels == 1).sum())
    assert counts["ignore"][0] > counts["zeros"][0] == counts["ones"][0]  # -1 became known
    assert counts["ones"][1] > counts["zeros"][1] == counts["ignore"][1]  # ... positive with `ones`
    table = pd.read_csv(layouts["chexpert"] / "train.csv", dtype=str, keep_default_na=False)
    assert (table == "-1.0").to_numpy().sum() == counts["ones"][1] - counts["zeros"][1]


def test_chexpert_paths_are_checked_row_by_row(layouts, tmp_path, capsys) -> None:
    from cxr14.config import TrainConfig
    from cxr14.data.pipeline.loaders import read_metadata

    data = tmp_path / "chexpert"
    shutil.copytree(layouts["chexpert"], data)
    table = pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)
    expected = read_metadata(TrainConfig(dataset="chexpert", data_dir=data, views="all"))
    table["Path"] = table["Path"].str.split("/", n=1).str[1]  # without the dataset folder's name: the same films
    table.to_csv(data / "train.csv", index=False)
    bare = read_metadata(TrainConfig(dataset="chexpert", data_dir=data, views="all"))
    assert list(bare.names) == list(expected.names) and (bare.patients == expected.patients).all()
    table.loc[4, "Path"] = "train/patient1/x.jpg"
    table.to_csv(data / "train.csv", index=False)
    code, _, err = run(capsys, "train", "--dataset", "chexpert", "--data_dir", str(data), "--output_dir",
                       str(tmp_path / "r"), *TINY)  # fmt: skip
    assert code == 2 and "train.csv, row 6, column 'Path': 'train/patient1/x.jpg' is not a CheXpert film" in err


def test_mimic_reads_either_labeler(layouts) -> None:
    from cxr14.config import TrainConfig
    from cxr14.data.pipeline.loaders import read_metadata

    metas = {k: read_metadata(TrainConfig(dataset="mimic", data_dir=layouts["mimic"], labeler=k)) for k in
             ("chexpert", "negbio")}  # fmt: skip
    assert all(m.source.name == "mimic-cxr-2.0.0-metadata.csv.gz" for m in metas.values())
    assert len(metas["chexpert"]) == len(metas["negbio"]) > 0 and len(metas["negbio"].label_names) == 14
    assert set(metas["chexpert"].split) == {"train", "val", "test"}


def test_download_check_reads_other_layouts(layouts, capsys) -> None:
    code, out, _ = run(capsys, "download", "--check", "--dataset", "mimic", "--data_dir", str(layouts["mimic"]))
    assert code == 0 and "films:" in out and "ready: cxr14 train --dataset mimic" in out
    code, _, err = run(capsys, "download", "--dataset", "mimic", "--data_dir", str(layouts["mimic"]))
    assert code == 2 and "fetches NIH ChestX-ray14 only" in err


@pytest.mark.slow
def test_prepare_caches_another_layout_and_training_reads_the_cache(layouts, tmp_path, capsys) -> None:
    data = tmp_path / "mimic"
    shutil.copytree(layouts["mimic"], data)  # the cache is written beside the data: a copy of our own
    code, _, err = run(capsys, "prepare", "--dataset", "mimic", "--data_dir", str(data), "--image_size", "32",
                       "--no-progress", "--workers", "1")  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "train", *data_args("mimic", data), "--output_dir", str(tmp_path / "run"), *TINY)
    assert code == 0, err
    assert "decoding" not in err and "using cache" in err


@pytest.mark.slow
def test_fine_tuning_from_an_hf_folder_under_torchrun_stops_and_resumes(phantom_run, layouts, tmp_path, capsys
                                                                        ) -> None:  # fmt: skip
    """--init with an exported hf folder, 2 gloo processes, stopped by SIGTERM in epoch 2 and resumed: the resumed
    run keeps the first one's --init record and does not fine-tune again over its own weights."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    code, _, err = run(capsys, "export", "--checkpoint", str(phantom_run[0] / "best_model.pth"), "--out",
                       str(tmp_path / "x"), "--format", "hf")  # fmt: skip
    assert code == 0, err
    hf, out = tmp_path / "x" / "hf", tmp_path / "ft"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            str(REPO / "main.py"), *data_args("csv", layouts["csv"]), "--init", str(hf), "--output_dir", str(out),
            *TINY, "--image_size", "64", "--num_epochs", "3", "--batch_size", "4"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "metrics.csv").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, first = proc.communicate(timeout=180)
    assert "fine-tuning from" in first and "head rows kept for Cardiomegaly, Effusion; new for Opacity" in first
    assert "--resume auto" in first, first[-3000:]
    resumed = subprocess.run([*args, "--resume", "auto"], capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "fine-tuning from" not in resumed.stderr
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 3
    record = json.loads((out / "config.json").read_text())["init"]
    assert record["from"] == str(hf) and record["new"] == ["Opacity"]


# --- what a new user ran into (each was a wrong or missing answer) ----------------------------------------------


def test_blank_split_cells_are_not_fixed(tmp_path, capsys) -> None:
    """Marking only the test films: the rest are split patient-wise; a patient's blank film follows its fixed one."""
    rows = ["path,patient,split,A"] + [f"images/f{i}.png,{i // 2},{'test' if i < 8 else ''},{i % 3 == 0:d}"
                                        for i in range(40)]  # fmt: skip
    rows.append("images/late.png,0,,1")  # patient 0's other films are test: this one follows them
    (tmp_path / "images").mkdir()
    for row in rows[1:]:
        (tmp_path / row.split(",")[0]).write_bytes(b"")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    code, out, err = run(capsys, "download", "--check", "--dataset", "csv", "--csv", str(tmp_path / "data.csv"))
    assert code == 0, err
    assert "its own (train 32, val 0, test 9;" in out  # blank: training (validation is carved from it)
    assert "33 film(s) with a blank split: 1 follow their patient's other films" in err


def test_a_semicolon_separated_csv_reads(layouts, tmp_path, capsys) -> None:
    """What spreadsheet programs write where the comma is the decimal mark."""
    text = (layouts["csv"] / "dataset.csv").read_text().replace(",", ";")
    (tmp_path / "dataset.csv").write_text(text)
    (tmp_path / "images").symlink_to(layouts["csv"] / "images")
    code, out, err = run(capsys, "download", "--check", "--dataset", "csv", "--csv", str(tmp_path / "dataset.csv"))
    assert code == 0 and "labels Cardiomegaly, Effusion, Opacity" in out, err


@pytest.mark.slow
def test_compare_across_label_sets_says_what_is_shared(phantom_run, csv_run, layouts, tmp_path, capsys) -> None:
    """An NIH model and a csv-trained model on the csv data: compared on the findings both have, through the label
    map; with no finding in common, that is what the message says (not "no image in common")."""
    nih, own = phantom_run[0] / "best_model.pth", csv_run / "best_model.pth"
    args = ["--dataset", "csv", "--csv", str(layouts["csv"] / "dataset.csv"), "--n_resamples", "100", "--num_workers",
            "0", "--device", "cpu", "--no-progress"]  # fmt: skip
    code, _, err = run(capsys, "compare", str(own), str(nih), "--out", str(tmp_path / "a"), *args)
    assert code == 0, err
    result = json.loads((tmp_path / "a" / "comparison.json").read_text())
    assert result["labels"] == ["Cardiomegaly", "Effusion"] and "Opacity" in result["alignment"]["findings_left_out"]
    renamed = tmp_path / "renamed.csv"  # the same films under labels no NIH finding stands for
    renamed.write_text((layouts["csv"] / "dataset.csv").read_text().replace("Cardiomegaly,Effusion,Opacity",
                                                                            "Heart,Fluid,Spot", 1))  # fmt: skip
    (tmp_path / "images").symlink_to(layouts["csv"] / "images")
    code, _, err = run(capsys, "compare", str(nih), str(nih), "--out", str(tmp_path / "b"), *args[:2], "--csv",
                       str(renamed), *args[4:])  # fmt: skip
    assert code == 2 and "share none" in err and "Heart, Fluid, Spot" in err and "share no image" not in err


@pytest.mark.slow
def test_external_validation_checks_only_what_it_scores(phantom_run, layouts, tmp_path) -> None:
    """Scoring an NIH model on a CheXpert folder whose training films lack a class of some label: evaluate trains
    nothing, so nothing about the training films is checked; and the default workers raise no library warning."""
    data = tmp_path / "chexpert"
    shutil.copytree(layouts["chexpert"], data, symlinks=True)
    train_csv = data / "train.csv"
    lines = train_csv.read_text().splitlines()
    column = lines[0].split(",").index("No Finding")
    lines[1:] = [",".join(c if k != column else "" for k, c in enumerate(line.split(","))) for line in lines[1:]]
    train_csv.write_text("\n".join(lines) + "\n")  # No Finding: never positive in training
    done = run_cli("-m", "cxr14", "evaluate", "--checkpoint", str(phantom_run[0] / "best_model.pth"), "--dataset",
                   "chexpert", "--data_dir", str(data), "--out", str(tmp_path / "ev"), "--n_resamples", "100",
                   "--device", "cpu", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr and "worker processes in total" not in done.stderr
