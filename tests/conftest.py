"""Shared fixtures: a tiny NIH-format folder made here, and running the CLI in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from cxr14.labels import NIH_LABELS, decode

REPO = Path(__file__).resolve().parents[1]
#: The smallest real training run: a timm ConvNeXt at 32 px on the CPU, no worker processes.
TINY_TRAIN = ("--model", "convnext_atto", "--image_size", "32", "--batch_size", "8", "--num_workers", "0",
              "--device", "cpu", "--no-progress")  # fmt: skip
HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)


def make_nih_folder(root: Path, n_patients: int = 24, per_patient: int = 3, size: int = 48, seed: int = 0) -> Path:
    """A small dataset in NIH's on-disk format: 2017 CSV (CRLF, trailing comma), images/, both lists.

    Each finding brightens its own tile of the image, so a model can learn something in two epochs.
    The first image is saved as RGBA (like 519 real ones) and the last one is truncated (corrupt).
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows, names = [HEADER_2017], []
    for patient in range(1, n_patients + 1):
        for follow in range(per_patient):
            labels = (rng.random(len(NIH_LABELS)) < 0.25).astype(np.uint8)
            name = f"{patient:08d}_{follow:03d}.png"
            pixels = rng.integers(0, 60, (size, size)).astype(np.uint8)
            tile = size // 4
            for j in np.flatnonzero(labels):
                r, c = divmod(int(j), 4)
                pixels[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] += 150
            img = Image.fromarray(pixels, "L")
            (img.convert("RGBA") if not names else img).save(root / "images" / name)
            rows.append(f"{name},{decode(labels)},{follow},{patient},{40 + follow},M,PA,2500,2048,0.143,0.143")
            names.append(name)
    (root / "Data_Entry_2017.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    last = root / "images" / names[-1]
    last.write_bytes(last.read_bytes()[:60])  # truncated PNG
    test_patients = set(range(1, n_patients + 1, 4))
    split = {"test_list.txt": [], "train_val_list.txt": []}
    for name in names:
        split["test_list.txt" if int(name[:8]) in test_patients else "train_val_list.txt"].append(name)
    for file, listed in split.items():
        (root / file).write_text("\n".join(sorted(listed)))  # no final newline, as NIH's
    return root


@pytest.fixture(scope="session")
def nih_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_nih_folder(tmp_path_factory.mktemp("nih") / "data")


def comparable_metrics(run: Path) -> dict:
    """A run's metrics.json without what names the run itself (its creation time, its model card's paths)."""
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in ("created", "model")}


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py as a module (scripts/ is not a package): the tests drive the README's screenshot helpers."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command of this repo in a subprocess (the real entry point, as a user would)."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


#: The shared trained-phantom model: convnext_atto from scratch on a small phantom set. Sized so that its
#: heatmaps point at the drawn signs (test_cam) while the whole fixture stays a fraction of a minute or two.
PHANTOM_RUN = {"n_patients": 300, "phantom_size": 64, "image_size": 64, "epochs": 6}


@pytest.fixture(scope="session")
def phantom_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder holding best_model.pth, phantom data folder with BBox_List_2017.csv), made once a session.

    For the tests of everything that needs a model that has learnt something: CAM, evaluate --bbox,
    predict, serve, export. Read it, never write into it (other tests share it).
    """
    from cxr14.config import TrainConfig
    from cxr14.data import phantom
    from cxr14.training.conductor import train

    root = tmp_path_factory.mktemp("phantom_run")
    s = PHANTOM_RUN
    data = root / "data"
    phantom.write_dataset(data, n_patients=s["n_patients"], size=s["phantom_size"], seed=0, workers=2, progress=False)
    cfg = TrainConfig(
        data_dir=data,
        output_dir=root / "run",
        model="convnext_atto",
        image_size=s["image_size"],
        batch_size=32,
        num_workers=0,
        max_train_samples=0,
        max_test_samples=0,
        num_epochs=s["epochs"],
        learning_rate=2e-3,
        weight_decay=0.05,
        loss="asl",
        patience=s["epochs"],
        device="cpu",
        progress=False,
    )
    train(cfg)
    return root / "run", data


@pytest.fixture(scope="session")
def second_run(phantom_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, weaker model on the same phantom data (fewer epochs, another seed): what compare and the ensemble
    tests set against phantom_run's. Its run folder, holding best_model.pth and its test predictions."""
    from cxr14.config import TrainConfig
    from cxr14.training.conductor import train

    out = tmp_path_factory.mktemp("second_run") / "run"
    s = PHANTOM_RUN
    train(TrainConfig(data_dir=phantom_run[1], output_dir=out, model="convnext_atto", image_size=s["image_size"],
                      batch_size=32, num_workers=0, max_train_samples=0, max_test_samples=0, num_epochs=3,
                      learning_rate=2e-3, weight_decay=0.05, loss="bce", patience=3, seed=1, device="cpu",
                      progress=False))  # fmt: skip
    return out


# --- real films: Kermany et al.'s pediatric set, a fixed subset (tests/data/kermany_subset, CC BY 4.0) ----------

KERMANY = REPO / "tests" / "data" / "kermany_subset"
FOLDER = ("--dataset", "folder", "--data_dir", str(KERMANY), "--patient_pattern", "kermany")
#: The recipe of the real-film tests: convnext_atto at 64 px, a few epochs on 240 training films (about 10 s each).
TRAIN = ("--model", "convnext_atto", "--image_size", "64", "--num_epochs", "8", "--batch_size", "32",
         "--learning_rate", "2e-3", "--sched", "cosine", "--val_fraction", "0.2", "--max_train_samples", "0",
         "--max_test_samples", "0", "--num_workers", "0", "--device", "cpu", "--no-progress")  # fmt: skip


def train_kermany(out: Path, seed: int) -> Path:
    done = run_cli("main.py", *FOLDER, *TRAIN, "--seed", str(seed), "--output_dir", str(out),
                   "--cache_dir", str(out.parent / "cache"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def kermany_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two models trained from scratch on real pediatric films (tests/data/kermany_subset), seeds 0 and 1, through
    the real CLI (the cache made once by `cxr14 prepare`). Read them, never write into them."""
    root = tmp_path_factory.mktemp("kermany")
    done = run_cli("-m", "cxr14", "prepare", *FOLDER, "--image_size", "64", "--cache_dir", str(root / "cache"),
                   "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return [train_kermany(root / f"seed{seed}", seed) for seed in (0, 1)]
