"""Several datasets in one run (--dataset A,B,C or --mix FILE), the dataset registry, and the Python API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr14.cli import main
from tests.conftest import REPO, TINY_TRAIN


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Phantoms in NIH's, CheXpert's and a csv layout side by side (60 patients each, 48 px)."""
    root = tmp_path_factory.mktemp("mix")
    for layout in ("nih", "chexpert", "csv"):
        assert main(["phantom", "--layout", layout, "--out", str(root / layout), "--n_patients", "60", "--size", "48",
                     "--workers", "2", "--no-progress"]) == 0  # fmt: skip
    return root


@pytest.fixture(scope="module")
def mixed_run(sources: Path) -> Path:
    """One model trained through the CLI on the three datasets at once."""
    out = sources / "run"
    code = main(["train", "--dataset", "nih,chexpert,csv", "--data_dir", f"{sources / 'nih'},{sources / 'chexpert'}",
                 "--csv", str(sources / "csv" / "dataset.csv"), *TINY_TRAIN, "--num_epochs", "2",
                 "--max_train_samples", "0", "--max_test_samples", "0", "--output_dir", str(out)])  # fmt: skip
    assert code == 0
    return out


@pytest.mark.slow
def test_one_model_from_three_datasets(mixed_run: Path) -> None:
    """Per-source and pooled test AUROCs with intervals; a finding only one source labels is scored on it alone."""
    m = json.loads((mixed_run / "metrics.json").read_text())
    assert set(m["sources"]) == {"nih", "chexpert", "csv"}
    labels = m["labels"]
    assert "Effusion" in labels and "Pleural Effusion" not in labels  # one output for the same finding
    assert {"Hernia", "Lung Opacity", "Opacity"} <= set(labels)  # each from one source only
    per = {s: v["per_class"] for s, v in m["sources"].items()}
    assert per["nih"]["Hernia"]["auroc"] is not None and per["chexpert"]["Hernia"]["auroc"] is None
    assert per["csv"]["Opacity"]["auroc"] is not None and per["nih"]["Opacity"]["auroc"] is None
    assert all(per[s]["Effusion"]["auroc"] is not None for s in per)  # all three label it, each its own name
    assert m["mean_auroc_ci"][0] is not None and all(v["mean_auroc_ci"][0] is not None for v in m["sources"].values())
    assert sum(v["n_images"] for v in m["sources"].values()) == m["n_images"]
    assert set(m["validation_sources"]) == {"nih", "chexpert", "csv"}
    html = (mixed_run / "report.html").read_text()
    assert "By source dataset" in html and "chexpert (chexpert)" in html
    config = json.loads((mixed_run / "config.json").read_text())
    assert config["dataset"] == "nih,chexpert,csv"
    assert [s["name"] for s in config["sources"]] == ["nih", "chexpert", "csv"]
    assert all(s["train_films"] > 0 and s["weight"] is None for s in config["sources"])


@pytest.mark.slow
def test_the_merged_model_on_one_dataset(mixed_run: Path, sources: Path, tmp_path, capsys) -> None:
    """evaluate --dataset chexpert of the merged model: CheXpert's own names, through the label map."""
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(mixed_run / "best_model.pth"), "--dataset", "chexpert",
                       "--data_dir", str(sources / "chexpert"), "--out", str(tmp_path / "ev"), "--n_resamples", "100",
                       "--device", "cpu", "--no-progress")  # fmt: skip
    assert code == 0, err
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "Pleural Effusion" in m["labels"] and m["per_class"]["Pleural Effusion"]["auroc"] is not None
    assert m.get("sources") is None


@pytest.mark.slow
def test_a_mix_file_gives_each_source_its_share(sources: Path, tmp_path, capsys) -> None:
    mix = tmp_path / "mix.toml"
    mix.write_text(f'[[source]]\ndataset = "nih"\ndata_dir = "{sources / "nih"}"\nweight = 1\n'
                   f'[[source]]\ndataset = "chexpert"\ndata_dir = "{sources / "chexpert"}"\nuncertain = "zeros"\n'
                   f"weight = 3\n")  # fmt: skip
    code, _, err = run(capsys, "train", "--mix", str(mix), *TINY_TRAIN, "--num_epochs", "1", "--output_dir",
                       str(tmp_path / "r"))  # fmt: skip
    assert code == 0, err
    assert re.search(r"batches: nih 25% \(\d+ films\), chexpert 75%", err), err
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["sources"]["chexpert"]["batch_weight"] == 3


def test_weighted_epochs_follow_the_shares() -> None:
    from cxr14.data.pipeline.sampler import EpochSampler

    origin = np.array([0] * 100 + [1] * 900)
    share = np.array([0.5, 0.5])
    weights = share[origin] / np.bincount(origin)[origin]
    drawn = np.array(list(EpochSampler(range(1000), 0, 1, seed=0, weights=weights)))
    assert len(drawn) == 1000 and abs((drawn < 100).mean() - 0.5) < 0.06
    again = EpochSampler(range(1000), 0, 1, seed=0, weights=weights)
    assert list(again) == drawn.tolist()  # seeded: a resumed run sees the same epoch
    halves = [list(EpochSampler(range(1000), r, 2, seed=0, weights=weights)) for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == sorted(drawn.tolist())  # two processes draw the one epoch together
    assert torch.is_tensor(again.weights)


@pytest.mark.parametrize(("text", "says"), [
    ('[[source]]\ndataset = "nih"\n', "source 1: nih is read from a folder: give its data_dir"),
    ('[[source]]\ndataset = "nihh"\ndata_dir = "x"\n', "source 1: Unknown dataset 'nihh'"),
    ('[[source]]\ndataset = "nih"\ndata_dir = "x"\nreaders = "any"\n', "source 1: nih does not take readers"),
    ('[[source]]\ndataset = "nih"\ndata_dir = "x"\nweight = -1\n', "source 1: weight -1 is not a positive number"),
    ('[[source]]\ndataset = "nih"\ndata_dir = "x"\ncolour = 1\n', "source 1: unknown key(s) colour"),
    ('[[source]]\ndataset = "nih"\ndata_dir = "a"\nweight = 1\n[[source]]\ndataset = "chexpert"\ndata_dir = "b"\n',
     "give every source a weight, or none"),
    ("source = 3\n", "lists no source"),
    ("[[source]\n", "Cannot read the mix file"),
])  # fmt: skip
def test_a_bad_mix_file_is_named(tmp_path, capsys, text: str, says: str) -> None:
    mix = tmp_path / "mix.toml"
    mix.write_text(text)
    code, _, err = run(capsys, "train", "--mix", str(mix), "--output_dir", str(tmp_path / "r"))
    assert code == 2 and says in err and str(mix) in err, err


def test_inline_sources_need_a_folder_each(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "train", "--dataset", "nih,chexpert", "--data_dir", str(tmp_path),
                       "--output_dir", str(tmp_path / "r"))  # fmt: skip
    assert code == 2 and "reads 2 folder(s) (nih, chexpert) but --data_dir gives 1" in err
    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "nih,padchestt", "--output_dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "'nih,padchestt': choose nih, csv, folder, chexpert" in err


def test_the_registry_is_what_every_command_offers(capsys) -> None:
    """One entry per dataset: --help lists them, phantom writes each, detection names each."""
    from cxr14.data.datasets.registry import NAMES, detect
    from cxr14.data.phantom.command import PHANTOMS

    assert set(PHANTOMS) == set(NAMES)
    for command in ("train", "evaluate", "prepare", "phantom", "download"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert ", ".join(NAMES) in " ".join(capsys.readouterr().out.split())
    assert detect(REPO) == []


@pytest.mark.slow
def test_prepare_caches_each_source(sources: Path, tmp_path, capsys) -> None:
    code, out, err = run(capsys, "prepare", "--dataset", "nih,csv", "--data_dir", str(sources / "nih"), "--csv",
                         str(sources / "csv" / "dataset.csv"), "--image_size", "32", "--cache_dir", str(tmp_path),
                         "--no-progress")  # fmt: skip
    assert code == 0, err
    assert out.count("cache ready") == 2 and (tmp_path / "nih").is_dir() and (tmp_path / "csv").is_dir()


def readme_api_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readmes_python_api_section_runs_as_written(tmp_path) -> None:
    """Self-contained: it writes its phantom, reads it, trains, loads and predicts, in an empty folder."""
    script = tmp_path / "api.py"
    script.write_text(readme_api_block())
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Effusion" in done.stdout and "probabilities" in done.stdout


@pytest.mark.slow
def test_the_merged_model_exports_and_predicts(mixed_run: Path, sources: Path, tmp_path, capsys) -> None:
    """The merged label set travels: the hf export's card names the three datasets, predict has a column each."""
    code, _, err = run(capsys, "export", "--checkpoint", str(mixed_run / "best_model.pth"), "--out",
                       str(tmp_path / "x"), "--format", "hf")  # fmt: skip
    assert code == 0, err
    card = (tmp_path / "x" / "hf" / "README.md").read_text()
    assert "NIH ChestX-ray14 + CheXpert + a labelled set of its own" in card
    film = next((sources / "nih" / "images").glob("*.png"))
    code, out, err = run(capsys, "predict", str(film), "--checkpoint", str(mixed_run / "best_model.pth"),
                         "--device", "cpu", "--json", "--no-progress")  # fmt: skip
    assert code == 0, err
    row = json.loads(out.splitlines()[0])
    labels = json.loads((mixed_run / "metrics.json").read_text())["labels"]
    assert list(row["probabilities"]) == labels
