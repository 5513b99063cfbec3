"""Is reading a dataset's metadata something a user waits for? Each reader at its dataset's real size.

Writes metadata in each dataset's exact layout at its real size (no images: the readers do not open them) -
CheXpert's train.csv with 223,414 rows (and a 234-row valid.csv), MIMIC-CXR-JPG's metadata and split for
377,110 images with chexpert labels for 227,835 studies (gzipped, as PhysioNet ships them), PadChest's labels CSV
with 160,861 rows - then times `data.loaders.load_splits` (the files read, every label cell checked, paths,
patients, views, demographics, then the train / val / test split) against a plain `pandas.read_csv` of the same
files, each in a fresh process, in turn, best of --repeat, with each process's peak memory (maximum resident
set, the imports included). Targets: at most 3x plain pandas and 5 s on a 2-core machine. Then (all three
written) the three read as one mix (`--mix`, the way `cxr14 train --mix` reads them) against the sum of the three
alone: target, no more than the sum. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/metadata_read.py [--only chexpert]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.data.datasets.chexpert import COLUMNS, LABELS
from cxr14.data.phantom.layouts import PADCHEST_HEADER

SIZES = {"chexpert": 223414, "mimic": 377110, "mimic_studies": 227835, "padchest": 160861}


def label_cells(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """CheXpert-like cells: mostly blank, then 0.0, some 1.0 and -1.0."""
    return rng.choice(np.array(["", "0.0", "1.0", "-1.0"]), size=(n, k), p=[0.6, 0.2, 0.15, 0.05])


def write_chexpert(folder: Path, rng: np.random.Generator) -> None:
    n = SIZES["chexpert"]
    patient = np.sort(rng.integers(1, 64541, n))
    frontal = rng.random(n) < 0.855
    frame = pd.DataFrame({
        "Path": [f"CheXpert-v1.0-small/train/patient{p:05d}/study{s}/view{v}_{'frontal' if f else 'lateral'}.jpg"
                 for p, s, v, f in zip(patient, rng.integers(1, 9, n), rng.integers(1, 3, n), frontal, strict=True)],
        "Sex": rng.choice(["Male", "Female"], n), "Age": rng.integers(18, 91, n).astype(str),
        "Frontal/Lateral": np.where(frontal, "Frontal", "Lateral"),
        "AP/PA": np.where(frontal, rng.choice(["AP", "PA"], n), ""),
    })  # fmt: skip
    frame = pd.concat([frame, pd.DataFrame(label_cells(rng, n, len(LABELS)), columns=list(LABELS))], axis=1)
    frame.to_csv(folder / "train.csv", index=False)
    valid = frame.iloc[:234].copy()
    valid["Path"] = [f"CheXpert-v1.0-small/valid/patient{64541 + i // 2}/study1/view1_frontal.jpg" for i in range(234)]
    valid[list(LABELS)] = rng.choice(["0.0", "1.0"], size=(234, len(LABELS)))
    valid.to_csv(folder / "valid.csv", index=False)
    assert tuple(frame.columns[:5]) == COLUMNS


def write_gz(path: Path, frame: pd.DataFrame) -> None:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    path.write_bytes(gzip.compress(buf.getvalue().encode(), compresslevel=6))


def write_mimic(folder: Path, rng: np.random.Generator) -> None:
    n, studies = SIZES["mimic"], SIZES["mimic_studies"]
    subject = rng.integers(10000000, 19999999, studies)
    study = rng.choice(np.arange(50000000, 59999999), studies, replace=False)
    which = np.sort(rng.integers(0, studies, n))
    dicom = [f"{h[:8]}-{h[8:16]}-{h[16:24]}-{h[24:32]}-{h[32:40]}" for h in (f"{i:040x}" for i in rng.integers(
        0, 2**62, n))]  # fmt: skip
    meta = pd.DataFrame({"dicom_id": dicom, "subject_id": subject[which], "study_id": study[which],
                         "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                         "ViewPosition": rng.choice(["PA", "AP", "LATERAL", "LL", ""], n, p=[0.26, 0.39, 0.22, 0.09,
                                                    0.04])})  # fmt: skip
    write_gz(folder / "mimic-cxr-2.0.0-metadata.csv.gz", meta)
    split = pd.DataFrame({"dicom_id": dicom, "study_id": study[which], "subject_id": subject[which],
                          "split": rng.choice(["train", "validate", "test"], studies, p=[0.978, 0.008, 0.014])[
                              np.unique(subject, return_inverse=True)[1]][which]})  # by subject, as MIMIC's
    write_gz(folder / "mimic-cxr-2.0.0-split.csv.gz", split)
    labels = pd.DataFrame(label_cells(rng, studies, len(LABELS)), columns=sorted(LABELS))
    write_gz(folder / "mimic-cxr-2.0.0-chexpert.csv.gz",
             pd.concat([pd.DataFrame({"subject_id": subject, "study_id": study}), labels], axis=1))


def write_padchest(folder: Path, rng: np.random.Generator) -> None:
    n = SIZES["padchest"]
    vocabulary = ["normal", "cardiomegaly", "pleural effusion", "pneumonia", "atelectasis", "nodule", "unchanged",
                  "chronic changes", "infiltrates", "emphysema", "scoliosis", "aortic elongation"]  # fmt: skip
    cells = ["[" + ", ".join(repr(str(v)) for v in rng.choice(vocabulary, int(rng.integers(1, 4)), replace=False)) + "]"
             for _ in range(n)]  # fmt: skip
    frame = pd.DataFrame({h: "" for h in PADCHEST_HEADER}, index=range(n))
    frame["ImageID"] = [f"{i:038d}_{i % 999999:06d}.png" for i in range(n)]
    frame["ImageDir"] = (np.arange(n) * 50 // n).astype(str)
    frame["PatientID"] = rng.integers(0, 67625, n).astype(str)
    frame["Projection"] = rng.choice(["PA", "L", "AP_horizontal", "AP", "COSTAL"], n, p=[0.5, 0.3, 0.15, 0.04, 0.01])
    frame["PatientBirth"] = rng.integers(1920, 2010, n).astype(float).astype(str)
    frame["StudyDate_DICOM"] = "20150622"
    frame["PatientSex_DICOM"] = rng.choice(["M", "F"], n)
    frame["Labels"] = cells
    write_gz(folder / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", frame)


FILES = {"chexpert": ["train.csv", "valid.csv"],
         "padchest": ["PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"],
         "mimic": ["mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-split.csv.gz",
                   "mimic-cxr-2.0.0-chexpert.csv.gz"]}  # fmt: skip
CHILD = """
import json, resource, sys, time
from pathlib import Path
import pandas as pd
from cxr14.config import TrainConfig
from cxr14.data.pipeline.loaders import load_splits  # imports first: the clock times the reading alone
dataset, folder, how = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
if how == "pandas":
    rows = sum(len(pd.read_csv(folder / f)) for f in json.loads(sys.argv[4]))
elif how == "mix":
    cfg = TrainConfig(mix=folder / "mix.json", views="all", max_train_samples=0, max_test_samples=0)
    rows = sum(len(s) for s in load_splits(cfg).values())
else:
    labels = "cardiomegaly,pleural effusion,pneumonia" if dataset == "padchest" else None
    cfg = TrainConfig(dataset=dataset, data_dir=folder, labels=labels, views="all", max_train_samples=0,
                      max_test_samples=0)
    rows = sum(len(s) for s in load_splits(cfg).values())
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rows": rows, "peak_mib": peak, "imports_mib": imports}))
"""


def measure(dataset: str, folder: Path, how: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, dataset, str(folder), how, json.dumps(FILES.get(dataset, []))],
                         capture_output=True, text=True, check=False)  # fmt: skip
    if out.returncode:
        raise SystemExit(f"{dataset} ({how}) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("chexpert", "mimic", "padchest"), help="one dataset only")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print("peak MiB: the process's maximum resident set, its imports (torch, pandas, cxr14) included")
    print(f"{'dataset':<10}{'rows':>9}{'plain pandas s':>16}{'cxr14 reader s':>16}{'ratio':>7}{'imports MiB':>13}"
          f"{'pandas peak MiB':>17}{'reader peak MiB':>17}")  # fmt: skip
    alone: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, writer in (("chexpert", write_chexpert), ("mimic", write_mimic), ("padchest", write_padchest)):
            if args.only not in (None, dataset):
                continue
            folder = Path(tmp) / dataset
            folder.mkdir()
            writer(folder, rng)
            plain, ours = [], []
            for _ in range(args.repeat):  # in turn, so that both meet the same machine load
                plain.append(measure(dataset, folder, "pandas"))
                ours.append(measure(dataset, folder, "cxr14"))
            p = min(plain, key=lambda r: r["seconds"])
            o = min(ours, key=lambda r: r["seconds"])
            print(f"{dataset:<10}{o['rows']:>9,}{p['seconds']:>16.2f}{o['seconds']:>16.2f}"
                  f"{o['seconds'] / p['seconds']:>6.1f}x{o['imports_mib']:>13.0f}{p['peak_mib']:>17.0f}"
                  f"{o['peak_mib']:>17.0f}", flush=True)  # fmt: skip
            alone[dataset] = o["seconds"]
        if len(alone) == 3:
            mix = {"source": [{"dataset": d, "data_dir": d} for d in alone]}
            mix["source"][2]["labels"] = "cardiomegaly,pleural effusion,pneumonia"  # padchest: 174 to choose from
            (Path(tmp) / "mix.json").write_text(json.dumps(mix))
            mixed = min(measure("mix", Path(tmp), "mix")["seconds"] for _ in range(args.repeat))
            total = sum(alone.values())
            print(f"the three as one mix: {mixed:.2f} s, against {total:.2f} s for the three alone "
                  f"({mixed / total:.2f}x the sum)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
