"""Which dataset layout a folder has, read from the files each one ships with, so that a wrong --dataset gets
"this looks like CheXpert's layout: pass --dataset chexpert" instead of a confusing error about missing columns."""

from __future__ import annotations

from pathlib import Path

from cxr14.errors import UserError

#: (dataset, the glob patterns one of which its folder holds, how the README calls it).
SIGNATURES = (
    ("nih", ("Data_Entry_2017*.csv", "Data_Entry_2017*.csv.gz"), "NIH ChestX-ray14's"),
    ("chexpert", ("valid.csv",), "CheXpert's"),
    ("mimic", ("mimic-cxr-*-metadata.csv", "mimic-cxr-*-metadata.csv.gz"), "MIMIC-CXR-JPG's"),
    ("padchest", ("PADCHEST_chest_x_ray_images_labels_*.csv", "PADCHEST_chest_x_ray_images_labels_*.csv.gz"),
     "PadChest's"),
    ("vindr", ("annotations/image_labels_train.csv",), "VinDr-CXR's"),
)


def detect(data_dir: Path) -> list[str]:
    """The datasets whose files `data_dir` holds (usually one, or none)."""
    if not data_dir.is_dir():
        return []
    return [name for name, patterns, _ in SIGNATURES if any(any(data_dir.glob(p)) for p in patterns)]


def check_layout(dataset: str, data_dir: Path) -> None:
    """UserError when the folder holds another dataset's files and not the asked one's."""
    if dataset == "csv":
        return
    found = detect(data_dir)
    if not found and dataset != "folder":
        from cxr14.data.datasets import folder

        if folder.looks_like(data_dir):
            raise UserError(f"{data_dir} holds class folders (or train/val/test folders of them), not {dataset}'s "
                            f"files: pass --dataset folder.")  # fmt: skip
    if found and dataset not in found:
        other = found[0]
        what = next(w for n, _, w in SIGNATURES if n == other)
        raise UserError(f"{data_dir} looks like {what} layout, not {dataset}'s: pass --dataset {other} (or the "
                        f"folder that holds the {dataset} files).")  # fmt: skip
