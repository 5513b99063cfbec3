"""`cxr14 train` (and `python main.py`): the training configuration, saved as config.json in the run folder."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cxr14.config.options import Options, opt
from cxr14.errors import UserError

EMA_DECAY = 0.9998
LOSSES = ("focal", "bce", "asl")
PATIENT_SCOPES = ("split", "dataset")
UNCERTAIN = ("ignore", "zeros", "ones")
VIEWS = ("frontal", "all")
READERS = ("any", "majority")
LABELERS = ("chexpert", "negbio")


#: Named sets of training options, for `--preset NAME`: they replace the defaults, and every option given on the
#: command line still wins. small_real: a few thousand real films on a CPU, from scratch; chosen on validation on
#: Kermany et al.'s pediatric set (176 px for 16 epochs beat 128 px for 24 in the same time; the README's Results).
PRESETS: dict[str, dict[str, Any]] = {
    "small_real": {"model": "convnext_atto", "image_size": 176, "num_epochs": 16, "sched": "cosine",
                   "warmup_epochs": 1, "learning_rate": 2e-3, "weight_decay": 0.05, "ema": 0.998, "aug_strength": 2.0,
                   "loss": "bce", "batch_size": 64, "patience": 16, "max_train_samples": 0, "max_test_samples": 0},
}  # fmt: skip


def _describe(options: dict[str, Any]) -> str:
    return " ".join(f"--{k} {v}" for k, v in options.items())


#: The dataset of a run whose sources a mix file names (--mix).
MIX = "mix"
#: --dataset's help; the CLI adds the names the dataset registry (cxr14.data.datasets.registry) holds.
DATASET_HELP = "the data's layout, or several comma-separated to train on them at once (with --data_dir A,B)"


def mix_opt(**extra: Any) -> Any:
    """--mix: several datasets, each with its own folder, options and weight (one declaration for every command)."""
    return opt(None, "a mix file (JSON or TOML) naming several datasets, each with its folder, its reader options and "
               "its share of the training batches; instead of --dataset A,B (the README's Mixing datasets)",
               path="in_file", **extra)  # fmt: skip


def negative_opt(**extra: Any) -> Any:
    """--negative: the folder reader's all-negative class (one declaration for every command that reads data)."""
    return opt(None, "folder: the class folder whose films have no finding (default: the one named like normal or "
               "no finding)", metavar="NAME", **extra)  # fmt: skip


def patient_pattern_opt(**extra: Any) -> Any:
    return opt(None, "folder: a regular expression finding the patient in each file name (its `patient` group, "
               "else its first group), or kermany / nih for those sets' names; without it every film is its own "
               "patient", metavar="REGEX", **extra)  # fmt: skip


def patient_scope_opt(default: str | None, **extra: Any) -> Any:
    return opt(default, "folder: patient ids read inside split folders are that split's own (split: the same id in "
               "train and test is two people, as in Kermany's set), or the same person everywhere (dataset)",
               choices=PATIENT_SCOPES, **extra)  # fmt: skip


@dataclass
class TrainConfig(Options):
    """Everything a training run depends on; saved as config.json beside its checkpoints."""

    preset: str | None = opt(None, "start from a named set of options (any option given here still wins): "
                             + "; ".join(f"{k}: {_describe(v)}" for k, v in PRESETS.items()),
                             choices=tuple(PRESETS))  # fmt: skip
    # The original interface (names and defaults kept exactly).
    pretrained: bool = opt(False, "start from ImageNet weights (local file or hub cache; see --pretrained_path)")
    batch_size: int = opt(64, "images per optimizer step per process (see --accum_steps)", min=1)
    num_workers: int = opt(4, "DataLoader worker processes (per process)", min=0)
    max_train_samples: int = opt(80000, "cap on training images (seeded random subset; 0 = no cap)", min=0)
    max_test_samples: int = opt(
        20000, "cap on test images (seeded random subset; 0 = no cap; published results use all 25,596)", min=0
    )
    num_epochs: int = opt(30, "maximum number of epochs", min=1)
    learning_rate: float = opt(1e-4, "AdamW learning rate", gt=0)
    weight_decay: float = opt(0.01, "AdamW weight decay", min=0)
    # Data.
    dataset: str = opt("nih", DATASET_HELP, metavar="NAME[,NAME...]")
    data_dir: Path = opt(Path("data"), "the dataset folder (NIH: Data_Entry_2017*.csv, the split lists and "
                         "images/); several datasets: their folders, comma-separated in the same order",
                         path="in_dir")  # fmt: skip
    mix: Path | None = mix_opt()
    csv: Path | None = opt(None, "nih: the metadata CSV if not in --data_dir; csv: the dataset's CSV (path, optional "
                           "patient, split, sex, age, view, and a column per label)", path="in_file")  # fmt: skip
    labels: str | None = opt(None, "the labels to train on, comma-separated (default: all the dataset has; padchest "
                             "needs them)", metavar="A,B,C")  # fmt: skip
    uncertain: str = opt("ignore", "uncertain (-1) labels: ignore (unknown: no loss, no AUROC), zeros or ones "
                         "(Irvin et al. 2019)", choices=UNCERTAIN)  # fmt: skip
    views: str = opt("frontal", "chexpert, mimic, padchest: frontal films only, or all", choices=VIEWS)
    readers: str = opt("any", "vindr: a finding is positive when any, or a majority, of its three readers marked it",
                       choices=READERS)  # fmt: skip
    labeler: str = opt("chexpert", "mimic: the labels of the chexpert or the negbio labeller", choices=LABELERS)
    negative: str | None = negative_opt()
    patient_pattern: str | None = patient_pattern_opt()
    patient_scope: str = patient_scope_opt("split")
    init: Path | None = opt(None, "fine-tune: start from this model (a best_model.pth, or an hf folder from cxr14 "
                            "export): its backbone, and its head's rows for labels of the same name",
                            path="in_model")  # fmt: skip
    cache_dir: Path | None = opt(
        None, "where `cxr14 prepare` put resized caches (default: DATA_DIR/cache)", path="in_dir"
    )
    val_fraction: float = opt(0.1, "fraction of train_val patients held out for validation", gt=0, lt=1)
    on_bad_image: str = opt(
        "fail", "missing/corrupt image: stop with an error, or skip it and count it", choices=("fail", "skip")
    )
    # Model and optimisation.
    model: str = opt("convnext_base", "any timm model name")
    pretrained_path: Path | None = opt(
        None, "weights file (.safetensors or .pth) for --pretrained", path="in_file"
    )
    image_size: int = opt(384, "square input size in pixels", min=16, max=4096)
    loss: str = opt("focal", "focal (alpha 0.25, gamma 2), bce, or asl (asymmetric)", choices=LOSSES)
    patience: int = opt(15, "early stopping: epochs without a better validation mean AUROC", min=1)
    sched: str = opt(
        "plateau",
        "LR schedule: plateau (ReduceLROnPlateau on validation AUROC) or cosine (per step)",
        choices=("plateau", "cosine"),
    )
    lr_patience: int = opt(5, "plateau: epochs without improvement before the LR drops", min=0)
    lr_factor: float = opt(0.1, "plateau: factor applied to the LR", gt=0, lt=1)
    warmup_epochs: int = opt(0, "cosine: epochs of linear warm-up from --min_lr", min=0)
    min_lr: float = opt(1e-6, "cosine: the LR at the end of the schedule", min=0)
    clip_grad: float = opt(1.0, "clip the gradient norm to this (0 = off)", min=0)
    accum_steps: int = opt(1, "micro-batches per optimizer step (global batch = batch x processes x this)", min=1)
    ema: float | None = opt(
        None,
        f"keep an exponential moving average of the weights (timm ModelEmaV3) with this decay (default "
        f"{EMA_DECAY} when given without a value); it is validated too and the better one becomes best_model.pth",
        nargs="?",
        const=EMA_DECAY,
        metavar="DECAY",
        gt=0,
        lt=1,
    )
    calibrate: bool = opt(
        True,
        "at the end, fit a temperature per finding on validation (calibrated probabilities; AUROC unchanged); "
        "decision thresholds are chosen there in any case",
    )
    augment: bool = opt(True, "random rotation/scale/shift/brightness/contrast on the device")
    aug_strength: float = opt(1.0, "multiplies every augmentation range (at 1: rotation 7 degrees, scale 8%%, shift "
                              "5%%, brightness and contrast 10%%)", gt=0, max=5)  # fmt: skip
    hflip: bool = opt(False, "also flip left-right (moves the heart to the wrong side; off by default)")
    # Speed.
    channels_last: bool = opt(False, "channels-last memory format (faster convolutions on recent GPUs)")
    compile: bool = opt(False, "torch.compile the model (minutes of compilation, then faster steps)")
    # Run.
    output_dir: Path | None = opt(None, "run folder (default: runs/MODEL-YYYYmmdd-HHMMSS)", path="out_dir")
    resume: str | None = opt(
        None,
        "continue a run: a last.pth path, or `auto` = OUTPUT_DIR/last.pth if it exists (else start afresh)",
        metavar="PATH|auto",
    )
    device: str = opt("auto", "auto, cpu, cuda or cuda:N (under torchrun: each process takes its LOCAL_RANK GPU)")
    precision: str = opt("auto", "auto = bf16 on GPU, fp32 on CPU", choices=("auto", "fp32", "bf16", "fp16"))
    seed: int = opt(0, "seed for splits, sampling, initialisation and augmentation", min=0)
    dist_timeout: int = opt(15, "minutes a process waits for the others before the job ends with an error", min=1)
    tensorboard: bool = opt(False, "also log per-epoch scalars to OUTPUT_DIR/tensorboard (needs cxr14[tensorboard])")
    progress: bool = opt(True, "show progress bars")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset is not None and self.preset not in PRESETS:
            raise UserError(f"--preset {self.preset!r} is not one of {', '.join(PRESETS)}.")
        if self.sched == "cosine" and self.warmup_epochs >= self.num_epochs:
            raise UserError(
                f"--warmup_epochs {self.warmup_epochs} leaves no epoch for the cosine schedule: it must be smaller "
                f"than --num_epochs ({self.num_epochs})."
            )
        if self.resume == "auto" and self.output_dir is None:
            raise UserError("--resume auto continues the run in --output_dir: pass --output_dir too.")
        if self.mix is not None:
            self.dataset = MIX  # the mix file names the datasets; config.json and metrics.json say "mix"

    @classmethod
    def from_preset(cls, name: str, **options: Any) -> TrainConfig:
        """A config from a preset's options, `options` over them (Python's `--preset NAME --option value`)."""
        if name not in PRESETS:
            raise UserError(f"preset {name!r} is not one of {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], "preset": name, **options})

    def resolved_output_dir(self) -> Path:
        if self.output_dir is not None:
            return self.output_dir
        if self.resume not in (None, "auto"):
            return Path(self.resume).parent
        return Path("runs") / f"{self.model}-{time.strftime('%Y%m%d-%H%M%S')}"

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        """config.json: every option, and what the run learnt of its data (its labels; what --init kept)."""
        path.write_text(json.dumps({**self.to_json(), **(extra or {})}, indent=2) + "\n")

    @classmethod
    def from_json(cls, saved: dict[str, Any], **overrides: Any) -> TrainConfig:
        """The config a checkpoint was trained with (paths back to Path, unknown keys ignored), with overrides."""
        kinds = {f.name: f.type for f in fields(cls)}
        values = {k: v for k, v in saved.items() if k in kinds}
        values = {k: Path(v) if v is not None and "Path" in str(kinds[k]) else v for k, v in values.items()}
        return cls(**{**values, "resume": None, "output_dir": None, **overrides})


def parse_with_preset(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                      train_parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:  # fmt: skip
    """Parse; when --preset names one, parse again with its options as the train parser's defaults, so that an
    option given on the command line wins whatever its value (even one equal to the plain default)."""
    args = parser.parse_args(argv)
    name = getattr(args, "preset", None)
    if name is None:
        return args
    target = train_parser or parser
    plain = {k: target.get_default(k) for k in PRESETS[name]}
    target.set_defaults(**PRESETS[name])
    try:
        return parser.parse_args(argv)
    finally:
        target.set_defaults(**plain)  # the parser stays as it was built
