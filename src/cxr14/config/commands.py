"""One dataclass per command other than `train`: its options, their ranges and paths, and what else it checks.

Every numeric option has a range and every path option a kind (`options.PATH_KINDS`), so that
`Options.__post_init__` refuses a bad value by name before any work starts; `tests/test_options.py` walks
these classes to keep it so for every future option.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from pathlib import Path

from cxr14.config.options import Options, check_writable, opt
from cxr14.config.train import (
    DATASET_HELP,
    LABELERS,
    LOSSES,
    MIX,
    READERS,
    UNCERTAIN,
    VIEWS,
    mix_opt,
    negative_opt,
    patient_pattern_opt,
    patient_scope_opt,
)
from cxr14.errors import UserError

#: What `cxr14 export` can write: a timm / Hugging Face folder, an ONNX graph.
EXPORT_FORMATS = ("hf", "onnx")
MODEL_HELP = "the best_model.pth of a training run"
CHECK_GROUP = "checking a folder (nothing is downloaded)"
URLS_FILE_HELP = (
    "a CSV with a header row and the columns number,url (required) and images,bytes,md5 (optional: "
    "empty or absent means NIH's value for that number), one row per archive 1..12; only the archives it "
    "lists are fetched. The package's own table, cxr14/data/nih_download/files/archives.csv, has this format."
)


@dataclass(kw_only=True)
class ScoringOptions(Options):
    """How a command that scores a model reads its data: shared by evaluate, compare and fit_gate.

    The dataset options default to the model's own (what its run trained on, from its config); given, they read
    another dataset: external validation. Keyword-only, so that each command's own fields (some without a
    default) can follow these; argparse lists these after the command's own options.
    """

    dataset: str | None = opt(None, DATASET_HELP + " (default: the model's own)", metavar="NAME[,NAME...]")
    mix: Path | None = mix_opt()
    labels: str | None = opt(None, "the data's labels to read, comma-separated (default: the model's own for its "
                             "own dataset, else all that can be scored)", metavar="A,B,C")  # fmt: skip
    uncertain: str | None = opt(None, "uncertain (-1) labels: ignore, zeros or ones (default: as the model was "
                                "trained)", choices=UNCERTAIN)  # fmt: skip
    views: str | None = opt(None, "frontal films only, or all (default: as the model was trained)", choices=VIEWS)
    readers: str | None = opt(None, "vindr: any or majority of the readers (default: as the model was trained)",
                              choices=READERS)  # fmt: skip
    labeler: str | None = opt(None, "mimic: chexpert or negbio labels (default: as the model was trained)",
                              choices=LABELERS)  # fmt: skip
    negative: str | None = negative_opt()
    patient_pattern: str | None = patient_pattern_opt()
    patient_scope: str | None = patient_scope_opt(None)
    approximate: bool = opt(False, "on another dataset, also score findings whose names match only approximately "
                            "(e.g. NIH Mass or Nodule against CheXpert's Lung Lesion), marked as such")  # fmt: skip

    csv: Path | None = opt(None, "metadata CSV if not in --data_dir", path="in_file")
    cache_dir: Path | None = opt(None, "where `cxr14 prepare` put resized caches (default: DATA_DIR/cache)",
                                 path="in_dir")  # fmt: skip
    on_bad_image: str = opt("fail", "missing/corrupt image: stop, or skip and count it", choices=("fail", "skip"))
    batch_size: int = opt(64, "images per forward pass", min=1)
    num_workers: int = opt(4, "DataLoader worker processes", min=0)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    progress: bool = opt(True, "show progress bars")


@dataclass(kw_only=True)
class EvaluateConfig(ScoringOptions):
    """`cxr14 evaluate`: a checkpoint and a data folder in, metrics with intervals and a report out."""

    checkpoint: Path | None = opt(None, f"{MODEL_HELP} (or an ensemble, or an export); or give --predictions",
                                  path="in_model")  # fmt: skip
    predictions: Path | None = opt(None, "instead of a model: a CSV of another tool's predictions on the split (an "
                                   "image column and one probability column per finding, named as the data's labels "
                                   "or as the label map spells them)", path="in_file")  # fmt: skip
    data_dir: Path = opt(Path("data"), "dataset folder (as for training)", path="in_dir")
    split: str = opt("test", "which split to score (the run's own patient-wise split; a predictions file's: the "
                     "dataset's own, else a seeded one as training makes it with its defaults)",
                     choices=("test", "val"))  # fmt: skip
    out: Path | None = opt(None, "output folder (default: next to the checkpoint or predictions file, "
                           "eval-SPLIT-TIMESTAMP)", path="out_dir")  # fmt: skip
    intersect: bool = opt(False, "--predictions: when the file and the split are not of the same films, score the "
                          "films in both (said in the output) instead of refusing")  # fmt: skip
    max_samples: int = opt(0, "score a seeded random subset of this many images (0 = the whole split)", min=0)
    n_resamples: int = opt(2000, "patient bootstrap resamples for the 95 percent intervals", min=100, max=100000)
    seed: int = opt(0, "seed of the bootstrap (and of --max_samples)", min=0)
    bbox: bool = opt(False, "score heatmaps against BBox_List_2017.csv (pointing game, IoU) and add a gallery")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.checkpoint is None) == (self.predictions is None):
            raise UserError("cxr14 evaluate scores a model (--checkpoint) or a file of predictions (--predictions): "
                            f"give {'one of them' if self.checkpoint is None else 'only one of them'}.")  # fmt: skip
        if self.predictions is not None and self.bbox:
            raise UserError("--bbox scores a model's heatmaps; a predictions file has none. Leave out --bbox.")


@dataclass(kw_only=True)
class CompareConfig(ScoringOptions):
    """`cxr14 compare`: two or more models on the same images; paired differences against the first."""

    models: list[Path] = opt(MISSING, "two or more models, the first the baseline: each a best_model.pth, an "
                             "ensemble (A.pth,B.pth or a manifest), an export, an evaluation or run folder whose "
                             "predictions are reused when they are of the same images, or a CSV of another tool's "
                             "predictions (as evaluate --predictions reads it)", positional=True, nargs="+",
                             path="in_model")  # fmt: skip
    data_dir: Path | None = opt(None, "dataset folder to score the models on (needed unless every model is a "
                                "folder of predictions; with --csv alone, the CSV's folder)",
                                path="in_dir")  # fmt: skip
    split: str = opt("test", "which split to compare on (the first model's patient-wise split)",
                     choices=("test", "val"))  # fmt: skip
    out: Path | None = opt(None, "output folder (default: beside the first model, compare-SPLIT-TIMESTAMP)",
                           path="out_dir")  # fmt: skip
    intersect: bool = opt(False, "when the models' image lists differ, compare on the images common to all (and "
                          "say so) instead of refusing")  # fmt: skip
    max_samples: int = opt(0, "score a seeded random subset of this many images (0 = the whole split)", min=0)
    n_resamples: int = opt(2000, "paired patient bootstrap resamples for the 95 percent intervals", min=100,
                           max=100000)  # fmt: skip
    seed: int = opt(0, "seed of the bootstrap (and of --max_samples)", min=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.models) < 2:
            raise UserError(
                f"cxr14 compare needs two or more models (got {len(self.models)}: {', '.join(map(str, self.models))}); "
                f"the first is the baseline the others are compared with. To score one model, use cxr14 evaluate."
            )
        if self.data_dir is None and self.csv is not None:
            self.data_dir = self.csv.parent  # the films of a csv dataset are named from its folder


@dataclass(kw_only=True)
class FitGateConfig(ScoringOptions):
    """`cxr14 fit_gate`: the out-of-distribution gate for a checkpoint trained without one, stored in it."""

    checkpoint: Path = opt(MISSING, "the best_model.pth to add the gate to", path="in_file")
    data_dir: Path = opt(Path("data"), "the dataset it was trained on (its train and validation splits, rebuilt as "
                         "its run split them)", path="in_dir")  # fmt: skip
    out: Path | None = opt(None, "write the checkpoint with its gate here instead of replacing --checkpoint "
                           "(atomically, once the gate is fitted)", path="out_file")  # fmt: skip
    force: bool = opt(False, "fit again when the checkpoint already carries a gate")


@dataclass
class PredictConfig(Options):
    """`cxr14 predict`: films in, one row of probabilities and calls per film out."""

    paths: list[Path] = opt(MISSING, "image files or folders of them (PNG, JPEG, DICOM)", positional=True, nargs="+",
                            path="in_films")  # fmt: skip
    checkpoint: Path = opt(MISSING, "the best_model.pth of a training run, or what `cxr14 export` made of it "
                           "(OUT/onnx/model.onnx or the OUT/hf folder)", path="in_model")  # fmt: skip
    out: Path | None = opt(None, "write the CSV (or JSON with --json) here instead of standard output",
                           path="out_file")  # fmt: skip
    json: bool = opt(False, "JSON lines instead of CSV: probabilities and the findings at or above threshold")
    cam: Path | None = opt(None, "also write a heatmap overlay PNG per image (its top findings) into this folder",
                           path="out_dir")  # fmt: skip
    cam_top: int = opt(3, "with --cam: how many of each image's most probable findings get a heatmap (all of "
                       "them when it has fewer)", min=1, max=100)  # fmt: skip
    on_unusual: str = opt("flag", "a film unlike the training data (or plainly not a chest film): keep its row, "
                          "marked unusual with the reason and no finding called, or leave it out",
                          choices=("flag", "skip"))  # fmt: skip
    batch_size: int = opt(32, "images per forward pass", min=1)
    num_workers: int = opt(2, "processes reading images", min=0)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    progress: bool = opt(True, "show a progress bar (on standard error)")


@dataclass
class ServeConfig(Options):
    """`cxr14 serve`: a checkpoint behind a local web page and a JSON API."""

    checkpoint: Path = opt(MISSING, MODEL_HELP, path="in_model")
    host: str = opt(
        "127.0.0.1",
        "address to listen on: 127.0.0.1 is this machine only; 0.0.0.0 opens it to every network (no login)",
    )
    port: int = opt(8000, "TCP port", min=1, max=65535)
    max_upload_mb: float = opt(32.0, "largest upload in MiB; a larger one gets 413 before it is read", gt=0)
    workers: int = opt(1, "inference threads (each scores one film at a time)", min=1, max=64)
    queue: int = opt(8, "requests that may wait for a free worker; one more gets 503 (busy)", min=0, max=1024)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")


@dataclass
class ExportConfig(Options):
    """`cxr14 export`: a checkpoint in; a timm/Hugging Face folder and an ONNX graph out, each verified."""

    checkpoint: Path = opt(MISSING, MODEL_HELP, path="in_model")
    out: Path = opt(MISSING, "output folder: OUT/hf (timm / Hugging Face) and OUT/onnx/model.onnx; new or empty",
                    path="out_dir")  # fmt: skip
    format: str = opt("hf,onnx", "comma-separated formats to write: hf, onnx")
    force: bool = opt(False, "replace a non-empty --out (only once the new export has passed its checks)")
    opset: int = opt(18, "ONNX opset: 18 is what torch's exporter writes (higher ones are converted from it); "
                     "ONNX Runtime runs 18 from version 1.14 on", min=18, max=30)  # fmt: skip
    onnx_float: bool = opt(False, "also write OUT/onnx/model_float32.onnx, taking float32 pixel values 0..255")
    batch: int = opt(5, "phantom films per verification batch (the graph is traced at 2; any batch runs)", min=1,
                     max=256)  # fmt: skip
    device: str = opt("cpu", "where the checkpoint and the timm reload run for the comparison: cpu, cuda, cuda:N")

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [f for f in self.formats if f not in EXPORT_FORMATS]
        if unknown or not self.formats:
            raise UserError(
                f"--format {self.format!r}: {'unknown ' + ', '.join(unknown) if unknown else 'no format given'}. "
                f"Choose from {', '.join(EXPORT_FORMATS)}, comma-separated (e.g. --format hf,onnx)."
            )

    @property
    def formats(self) -> tuple[str, ...]:
        """The formats asked for, in --format's order, each once."""
        return tuple(dict.fromkeys(f.strip().lower() for f in self.format.split(",") if f.strip()))


@dataclass(frozen=True)
class DemoConfig(Options):
    """`cxr14 demo`'s knobs; the defaults are what the README's timing and AUROC figures were measured with."""

    data_dir: Path = opt(Path("demo_data"), "phantom folder (made on the first run, reused after)", path="out_dir")
    output_dir: Path | None = opt(None, "run folder (default: runs/demo-TIMESTAMP)", path="out_dir")
    n_patients: int = opt(1200, "phantom patients (1-8 films each)", min=20, max=100000)
    phantom_size: int = opt(256, "phantom film size in px", min=64, max=2048)
    image_size: int = opt(96, "training size in px", min=32, max=1024)
    epochs: int = opt(12, "training epochs", min=1)
    batch_size: int = opt(32, "images per step", min=1)
    learning_rate: float = opt(2e-3, "AdamW learning rate", gt=0)
    loss: str = opt("asl", "training loss", choices=LOSSES)
    seed: int = opt(0, "seed for the phantoms and the training", min=0)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    bbox: bool = opt(True, "then score the heatmaps against the phantom boxes (cxr14 evaluate --bbox)")
    progress: bool = opt(True, "show progress bars")


@dataclass(frozen=True)
class PrepareConfig(Options):
    """`cxr14 prepare`: a data folder in, the resized uint8 cache that training reads out."""

    data_dir: Path = opt(Path("data"), "dataset folder", path="in_dir")
    dataset: str = opt("nih", DATASET_HELP + " (every film is cached, lateral ones too; several: a cache each)",
                       metavar="NAME[,NAME...]")  # fmt: skip
    mix: Path | None = mix_opt()
    negative: str | None = negative_opt()
    patient_pattern: str | None = patient_pattern_opt()
    patient_scope: str = patient_scope_opt("split")
    image_size: int = opt(384, "cache image side in px", min=16, max=4096)
    cache_dir: Path | None = opt(None, "where caches go (default: DATA_DIR/cache)", path="out_dir")
    csv: Path | None = opt(None, "nih: the metadata CSV if not in --data_dir; csv: the dataset's CSV",
                           path="in_file")  # fmt: skip
    labels: str | None = opt(None, "padchest: the labels to read (it has 174)", metavar="A,B,C")
    on_bad_image: str = opt("fail", "missing/corrupt images: stop, or skip them and count them",
                            choices=("fail", "skip"))  # fmt: skip
    workers: int | None = opt(None, "decoding processes (default: all cores)", min=1, max=1024)
    progress: bool = opt(True, "show a progress bar")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mix is not None:
            object.__setattr__(self, "dataset", MIX)  # as TrainConfig: the mix file names the datasets
        if self.cache_dir is None and self.data_dir.is_dir():
            check_writable("--data_dir", self.data_dir / "cache", folder=True)  # where the cache goes by default


@dataclass(frozen=True)
class PhantomConfig(Options):
    """`cxr14 phantom`: a synthetic dataset in NIH's layout, or a preview sheet of its findings."""

    out: Path | None = opt(None, "dataset folder to write", path="out_dir")
    layout: str = opt("nih", "write it as this dataset ships its own (csv: dataset.csv with three labels of its own)",
                      metavar="NAME")  # fmt: skip
    n_patients: int = opt(1000, "patients (1-8 images each)", min=1, max=1000000)
    size: int = opt(1024, "image side in pixels (1024 as NIH's)", min=32, max=4096)
    seed: int = opt(0, "random seed", min=0)
    workers: int | None = opt(None, "processes (default: all cores)", min=1, max=1024)
    preview: Path | None = opt(None, "instead: write a labelled contact sheet PNG to this file", path="out_file")
    preview_size: int = opt(256, "panel size of the preview", min=64, max=2048)
    progress: bool = opt(True, "show a progress bar")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.out is None and self.preview is None:
            raise UserError("cxr14 phantom needs --out DIR (the dataset folder) or --preview FILE.png.")


@dataclass(frozen=True)
class ReportConfig(Options):
    """`cxr14 report`: (re)build report.html in an evaluation or training run folder."""

    folder: Path = opt(MISSING, "the folder holding metrics.json", positional=True, path="in_dir")
    history: Path | None = opt(None, "the run's metrics.csv if not found beside it", path="in_file")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.folder.is_dir():
            check_writable("folder", self.folder / "report.html", folder=False)


@dataclass(frozen=True)
class DownloadConfig(Options):
    """`cxr14 download`: NIH's metadata and archives into a data folder, or (--check) whether it is ready."""

    data_dir: Path = opt(Path("data"), "the dataset folder", path="in_dir")
    dataset: str = opt("nih", "with --check: the folder's layout; downloading is NIH's alone", metavar="NAME",
                       group=CHECK_GROUP)  # fmt: skip
    negative: str | None = negative_opt(group=CHECK_GROUP)
    patient_pattern: str | None = patient_pattern_opt(group=CHECK_GROUP)
    patient_scope: str = patient_scope_opt("split", group=CHECK_GROUP)
    csv: Path | None = opt(None, "with --check --dataset csv: the dataset's CSV", path="in_file", group=CHECK_GROUP)
    mix: Path | None = mix_opt(group=CHECK_GROUP)
    only: str | None = opt(None, "fetch only these archives, 1..12 (e.g. 1 or 1,2 or 3-12)", metavar="N,M-K")
    jobs: int = opt(3, "archives downloaded at once", min=1, max=12)
    keep_archives: bool = opt(False, "keep each images_NN.tar.gz after unpacking it")
    base_url: str | None = opt(None, "a mirror folder holding images_01.tar.gz .. images_12.tar.gz (NIH's MD5s "
                               "still apply)", metavar="URL")  # fmt: skip
    urls_file: Path | None = opt(None, f"where to get each archive: {URLS_FILE_HELP}", metavar="CSV", path="in_file")
    timeout: float = opt(30.0, "connect and read timeout in seconds; the reachability probe waits at most 5",
                         gt=0, max=3600)  # fmt: skip
    progress: bool = opt(True, "progress bars")
    check: bool = opt(False, "report whether DATA_DIR is ready to train on", group=CHECK_GROUP)
    deep: bool = opt(False, "with --check: decode every PNG, list unreadable ones", group=CHECK_GROUP)
    workers: int | None = opt(None, "with --deep: decoding processes (default: all cores)", min=1, max=1024,
                              group=CHECK_GROUP)  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.check and (self.deep or self.workers is not None):
            raise UserError("--deep and --workers belong to `cxr14 download --check`; add --check to use them.")
        if not self.check and self.dataset != "nih":
            raise UserError(
                f"cxr14 download fetches NIH ChestX-ray14 only; {self.dataset} is distributed by its owners (the "
                f"README's dataset sections say where, and under which terms). Once it is in a folder, `cxr14 "
                f"download --check --dataset {self.dataset} --data_dir DIR` checks it."
            )
        if self.base_url and self.urls_file:
            raise UserError("--base_url and --urls_file both name where to download from: give one of them.")
        if not self.check:
            check_writable("--data_dir", self.data_dir, folder=True)  # downloading writes there
