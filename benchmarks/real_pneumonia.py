"""Real radiographs against a published paper: Kermany et al.'s pediatric pneumonia set, on this machine.

Trains through the real CLI on the release's training films as class folders (`--dataset folder`, patients from the
file names, validation carved from the training children by patient), with `--preset small_real` (the recipe chosen
on validation for a few thousand real films on a CPU, from scratch: no ImageNet weights can be downloaded here),
and scores the release's 624 test films once, at the end of training: AUROC with its patient-bootstrap interval,
and accuracy, sensitivity and specificity at the threshold chosen on validation, beside the paper's figures
(Inception-v3 from ImageNet weights, full-resolution films). Then, without the test labels, what the test films
say about whether validation's threshold will carry: the share called pneumonia, and the share the unusual-film
gate flags, on test against validation. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/real_pneumonia.py [--data_dir DIR] [--keep DIR] [-- more cxr14 train options]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "real" / "kermany_pneumonia_224"
PAPER = {"AUROC": "0.968", "accuracy": "92.8%", "sensitivity": "93.2%", "specificity": "90.1%"}
PRESET = "small_real"


def cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cxr14", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stderr[-3000:])
        raise SystemExit(f"cxr14 {args[0]} failed with exit status {done.returncode}")
    return done, time.perf_counter() - start


def called_share(path: Path, threshold: float) -> float:
    """The share of a predictions file's films called pneumonia at the threshold (no label is read)."""
    return float((pd.read_csv(path)["PNEUMONIA"] >= threshold).mean())


def main() -> None:
    from cxr14.config.train import PRESETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=DEFAULT_DATA, help="the release's folder (train/, test/)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    parser.add_argument("train_args", nargs="*", help="more `cxr14 train` options (after --), e.g. -- --seed 1")
    args = parser.parse_args()
    if not (args.data_dir / "train").is_dir():
        raise SystemExit(f"{args.data_dir} has no train/ folder: pass --data_dir, the folder of Kermany et al.'s "
                         f"release (Mendeley Data, doi:10.17632/rscbjbr9sj.2) with train/ and test/.")  # fmt: skip
    size = str(PRESETS[PRESET]["image_size"])
    data = ("--dataset", "folder", "--data_dir", str(args.data_dir), "--patient_pattern", "kermany")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
        _, t_prepare = cli("prepare", *data, "--image_size", size, "--cache_dir", str(work / "cache"), "--no-progress")
        train = ("train", *data, "--preset", PRESET, "--cache_dir", str(work / "cache"), "--output_dir",
                 str(work / "run"), "--no-progress", *args.train_args)  # fmt: skip
        _, t_train = cli(*train)
        run = work / "run"
        m = json.loads((run / "metrics.json").read_text())
        row = m["per_class"]["PNEUMONIA"]
        accuracy = (row["tp"] + row["tn"]) / (row["tp"] + row["tn"] + row["fp"] + row["fn"])
        low, high = m["mean_auroc_ci"]
        ours = {"AUROC": f"{m['mean_auroc']:.3f} [{low:.3f}, {high:.3f}]", "accuracy": f"{accuracy:.1%}",
                "sensitivity": f"{row['sensitivity']:.1%}", "specificity": f"{row['specificity']:.1%}"}  # fmt: skip
        print(f"command: cxr14 {' '.join(train)}")
        print(f"test: {m['n_images']} films of {m['n_patients']} children; threshold {row['threshold']:.3f} and "
              f"temperature chosen on validation ({m['model']['config'].get('val_fraction')} of the training children)")
        print(f"{'':34}{'AUROC':>26}{'accuracy':>10}{'sensitivity':>13}{'specificity':>13}")
        for name, figures in (("Kermany et al. 2018 (the paper)", PAPER), ("cxr14, from scratch, this CPU", ours)):
            print(f"{name:34}" + "".join(f"{figures[k]:>{w}}" for k, w in zip(PAPER, (26, 10, 13, 13), strict=True)))
        print(f"validation mean AUROC of the chosen weights: {m['model'].get('validation_mean_auroc'):.4f}")
        print(f"wall time: {(t_prepare + t_train) / 60:.1f} min (cache {t_prepare:.0f} s, training with the test "
              f"step {t_train / 60:.1f} min; target <= 30)")
        # Without the test labels: does validation's operating point carry to the test films?
        cli("evaluate", "--checkpoint", str(run / "best_model.pth"), *data, "--split", "val", "--cache_dir",
            str(work / "cache"), "--out", str(work / "val"), "--n_resamples", "200", "--no-progress")  # fmt: skip
        val_called = called_share(work / "val" / "val_predictions.csv", row["threshold"])
        test_called = called_share(run / "test_predictions.csv", row["threshold"])
        print(f"called pneumonia at the validation threshold (no label read): validation {val_called:.1%}, test "
              f"{test_called:.1%}")
        ood = m.get("ood") or {}
        if ood:
            print(f"test films the unusual-film gate flags: {ood['share_flagged']:.1%} (validation's threshold: 1%)")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
