"""The training configuration: one dataclass, its command-line options, its checks and its JSON in the run dir.

Each field's help text and accepted range live beside it. `add_arguments` builds the argparse options from the
fields and `TrainConfig.__post_init__` checks every range, so the CLI, `main.py`, `config.json` and a
`TrainConfig(...)` built in Python can never disagree about a name, a default or what is allowed, and a bad
value is reported by name before any data is read.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from cxr14.errors import UserError

#: Metadata keys that go to argparse; the range keys (min, max, gt, lt) are checked by `check_ranges`.
_ARGPARSE_KEYS = ("choices", "metavar", "nargs", "const")
EMA_DECAY = 0.9998
LOSSES = ("focal", "bce", "asl")
C = TypeVar("C")


def opt(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field carrying its argparse help, choices and accepted range as metadata."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as config.json beside its checkpoints."""

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
    data_dir: Path = opt(Path("data"), "folder with Data_Entry_2017*.csv, the split lists and images/")
    csv: Path | None = opt(None, "metadata CSV if not in --data_dir (default: found in --data_dir)")
    cache_dir: Path | None = opt(None, "where `cxr14 prepare` put resized caches (default: DATA_DIR/cache)")
    val_fraction: float = opt(0.1, "fraction of train_val patients held out for validation", gt=0, lt=1)
    on_bad_image: str = opt(
        "fail", "missing/corrupt image: stop with an error, or skip it and count it", choices=("fail", "skip")
    )
    # Model and optimisation.
    model: str = opt("convnext_base", "any timm model name")
    pretrained_path: Path | None = opt(None, "weights file (.safetensors or .pth) for --pretrained")
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
    hflip: bool = opt(False, "also flip left-right (moves the heart to the wrong side; off by default)")
    # Speed.
    channels_last: bool = opt(False, "channels-last memory format (faster convolutions on recent GPUs)")
    compile: bool = opt(False, "torch.compile the model (minutes of compilation, then faster steps)")
    # Run.
    output_dir: Path | None = opt(None, "run folder (default: runs/MODEL-YYYYmmdd-HHMMSS)")
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
        check_ranges(self)
        if self.sched == "cosine" and self.warmup_epochs >= self.num_epochs:
            raise UserError(
                f"--warmup_epochs {self.warmup_epochs} leaves no epoch for the cosine schedule: it must be smaller "
                f"than --num_epochs ({self.num_epochs})."
            )
        if self.output_dir is not None and self.output_dir.exists() and not self.output_dir.is_dir():
            raise UserError(f"--output_dir {self.output_dir} is an existing file, not a folder; choose another path.")
        if self.resume == "auto" and self.output_dir is None:
            raise UserError("--resume auto continues the run in --output_dir: pass --output_dir too.")

    def resolved_output_dir(self) -> Path:
        if self.output_dir is not None:
            return self.output_dir
        if self.resume not in (None, "auto"):
            return Path(self.resume).parent
        return Path("runs") / f"{self.model}-{time.strftime('%Y%m%d-%H%M%S')}"

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, saved: dict[str, Any], **overrides: Any) -> TrainConfig:
        """The config a checkpoint was trained with (paths back to Path, unknown keys ignored), with overrides."""
        kinds = {f.name: f.type for f in fields(cls)}
        values = {k: v for k, v in saved.items() if k in kinds}
        values = {k: Path(v) if v is not None and "Path" in str(kinds[k]) else v for k, v in values.items()}
        return cls(**{**values, "resume": None, "output_dir": None, **overrides})


@dataclass
class EvaluateConfig:
    """`cxr14 evaluate`: a checkpoint and a data folder in, metrics with intervals and a report out."""

    checkpoint: Path = opt(MISSING, "the best_model.pth of a training run")
    data_dir: Path = opt(Path("data"), "dataset folder (as for training)")
    split: str = opt("test", "which split to score (the run's own patient-wise split)", choices=("test", "val"))
    out: Path | None = opt(None, "output folder (default: next to the checkpoint, eval-SPLIT-TIMESTAMP)")
    csv: Path | None = opt(None, "metadata CSV if not in --data_dir")
    cache_dir: Path | None = opt(None, "where `cxr14 prepare` put resized caches (default: DATA_DIR/cache)")
    max_samples: int = opt(0, "score a seeded random subset of this many images (0 = the whole split)", min=0)
    n_resamples: int = opt(2000, "patient bootstrap resamples for the 95 percent intervals", min=100, max=100000)
    seed: int = opt(0, "seed of the bootstrap (and of --max_samples)", min=0)
    bbox: bool = opt(False, "score heatmaps against BBox_List_2017.csv (pointing game, IoU) and add a gallery")
    on_bad_image: str = opt("fail", "missing/corrupt image: stop, or skip and count it", choices=("fail", "skip"))
    batch_size: int = opt(64, "images per forward pass", min=1)
    num_workers: int = opt(4, "DataLoader worker processes", min=0)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    progress: bool = opt(True, "show progress bars")

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class PredictConfig:
    """`cxr14 predict`: films in, one row of probabilities and calls per film out."""

    paths: list[Path] = opt(MISSING, "image files or folders of them (PNG, JPEG, DICOM)", positional=True, nargs="+")
    checkpoint: Path = opt(MISSING, "the best_model.pth of a training run, or what `cxr14 export` made of it "
                           "(OUT/onnx/model.onnx or the OUT/hf folder)")  # fmt: skip
    out: Path | None = opt(None, "write the CSV (or JSON with --json) here instead of standard output")
    json: bool = opt(False, "JSON lines instead of CSV: probabilities and the findings at or above threshold")
    cam: Path | None = opt(None, "also write a heatmap overlay PNG per image (its top findings) into this folder")
    cam_top: int = opt(3, "with --cam: how many of each image's most probable findings get a heatmap", min=1, max=14)
    batch_size: int = opt(32, "images per forward pass", min=1)
    num_workers: int = opt(2, "processes reading images", min=0)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    progress: bool = opt(True, "show a progress bar (on standard error)")

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class ServeConfig:
    """`cxr14 serve`: a checkpoint behind a local web page and a JSON API."""

    checkpoint: Path = opt(MISSING, "the best_model.pth of a training run")
    host: str = opt(
        "127.0.0.1",
        "address to listen on: 127.0.0.1 is this machine only; 0.0.0.0 opens it to every network (no login)",
    )
    port: int = opt(8000, "TCP port", min=1, max=65535)
    max_upload_mb: float = opt(32.0, "largest upload in MiB; a larger one gets 413 before it is read", gt=0)
    workers: int = opt(1, "inference threads (each scores one film at a time)", min=1, max=64)
    queue: int = opt(8, "requests that may wait for a free worker; one more gets 503 (busy)", min=0, max=1024)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        check_ranges(self)


#: What `cxr14 export` can write: a timm / Hugging Face folder, an ONNX graph.
EXPORT_FORMATS = ("hf", "onnx")


@dataclass
class ExportConfig:
    """`cxr14 export`: a checkpoint in; a timm/Hugging Face folder and an ONNX graph out, each verified."""

    checkpoint: Path = opt(MISSING, "the best_model.pth of a training run")
    out: Path = opt(MISSING, "output folder: OUT/hf (timm / Hugging Face) and OUT/onnx/model.onnx; new or empty")
    format: str = opt("hf,onnx", "comma-separated formats to write: hf, onnx")
    force: bool = opt(False, "replace a non-empty --out (only once the new export has passed its checks)")
    opset: int = opt(18, "ONNX opset: 18 is what torch's exporter writes (higher ones are converted from it); "
                     "ONNX Runtime runs 18 from version 1.14 on", min=18)  # fmt: skip
    onnx_float: bool = opt(False, "also write OUT/onnx/model_float32.onnx, taking float32 pixel values 0..255")
    batch: int = opt(5, "phantom films per verification batch (the graph is traced at 2; any batch runs)", min=1,
                     max=256)  # fmt: skip
    device: str = opt("cpu", "where the checkpoint and the timm reload run for the comparison: cpu, cuda, cuda:N")

    def __post_init__(self) -> None:
        check_ranges(self)
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


def from_args(cls: type[C], args: argparse.Namespace) -> C:
    """A config dataclass from parsed arguments (its __post_init__ checks the ranges)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def _range_text(meta: dict[str, Any]) -> str:
    parts = [f">= {meta['min']}" if "min" in meta else "", f"> {meta['gt']}" if "gt" in meta else ""]
    parts += [f"<= {meta['max']}" if "max" in meta else "", f"< {meta['lt']}" if "lt" in meta else ""]
    return " and ".join(p for p in parts if p)


def check_ranges(obj: Any) -> None:
    """Raise a UserError naming the option, the value and the accepted range for the first value out of range."""
    for f in fields(obj):
        meta, value = f.metadata, getattr(obj, f.name)
        if value is None or not any(k in meta for k in ("min", "max", "gt", "lt")):
            continue
        bad = isinstance(value, float) and not math.isfinite(value)
        bad = bad or ("min" in meta and value < meta["min"]) or ("max" in meta and value > meta["max"])
        bad = bad or ("gt" in meta and value <= meta["gt"]) or ("lt" in meta and value >= meta["lt"])
        if bad:
            raise UserError(
                f"--{f.name} {value} is out of range: it must be {_range_text(meta)} ({meta['help'].split(' (')[0]})."
            )


def add_arguments(parser: argparse.ArgumentParser, cls: type = TrainConfig) -> None:
    """One `--name` option per dataclass field (or a positional one), typed and documented from the field.

    A field without a default is a required option.
    """
    hints = {"int": int, "float": float, "str": str, "Path": Path, "Path | None": Path, "float | None": float}
    hints.update({"str | None": str, "list[Path]": Path})
    for f in fields(cls):
        default = f.default if f.default is not MISSING else None
        kwargs: dict[str, Any] = {"default": default, "help": f.metadata.get("help", "")}
        if f.metadata.get("positional"):
            parser.add_argument(f.name, type=hints[str(f.type)], nargs=f.metadata["nargs"], help=kwargs["help"])
            continue
        if f.default is MISSING:
            kwargs["required"] = True
        if f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        else:
            kwargs["type"] = hints[str(f.type)]
            kwargs.update({k: f.metadata[k] for k in _ARGPARSE_KEYS if k in f.metadata})
        if default is not None and f.type != "bool":
            kwargs["help"] += " (default: %(default)s)"
        rng = _range_text(f.metadata)
        if rng:
            kwargs["help"] += f"; {rng}"
        parser.add_argument(f"--{f.name}", **kwargs)


@dataclass(frozen=True)
class DemoConfig:
    """`cxr14 demo`'s knobs; the defaults are what the README's timing and AUROC figures were measured with."""

    data_dir: Path = opt(Path("demo_data"), "phantom folder (made on the first run, reused after)")
    output_dir: Path | None = opt(None, "run folder (default: runs/demo-TIMESTAMP)")
    n_patients: int = opt(1200, "phantom patients (1-8 films each)", min=20)
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

    def __post_init__(self) -> None:
        check_ranges(self)
