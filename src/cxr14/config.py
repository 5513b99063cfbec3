"""The training configuration: one dataclass, its command-line options, and its JSON in the run dir.

Each field's help text lives beside it, and `add_arguments` builds the argparse options from the
fields, so the CLI, `main.py` and `config.json` can never disagree about a name or a default.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cxr14.loss import LOSSES


def opt(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field carrying its argparse help (and choices/metavar) as metadata."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as config.json beside its checkpoints."""

    # The original interface (names and defaults kept exactly).
    pretrained: bool = opt(False, "start from ImageNet weights (local file or hub cache; see --pretrained_path)")
    batch_size: int = opt(64, "images per optimizer step (per process)")
    num_workers: int = opt(4, "DataLoader worker processes")
    max_train_samples: int = opt(80000, "cap on training images (seeded random subset; 0 = no cap)")
    max_test_samples: int = opt(20000, "cap on test images (seeded random subset; 0 = no cap)")
    num_epochs: int = opt(30, "maximum number of epochs")
    learning_rate: float = opt(1e-4, "AdamW learning rate")
    weight_decay: float = opt(0.01, "AdamW weight decay")
    # Data.
    data_dir: Path = opt(Path("data"), "folder with Data_Entry_2017*.csv, the split lists and images/")
    csv: Path | None = opt(None, "metadata CSV if not in --data_dir (default: found in --data_dir)")
    cache_dir: Path | None = opt(None, "where `cxr14 prepare` put resized caches (default: DATA_DIR/cache)")
    val_fraction: float = opt(0.1, "fraction of train_val patients held out for validation")
    on_bad_image: str = opt(
        "fail", "missing/corrupt image: stop with an error, or skip it and count it", choices=("fail", "skip")
    )
    # Model and optimisation.
    model: str = opt("convnext_base", "any timm model name")
    pretrained_path: Path | None = opt(None, "weights file (.safetensors or .pth) for --pretrained")
    image_size: int = opt(384, "square input size in pixels")
    loss: str = opt("focal", "focal (alpha 0.25, gamma 2), bce, or asl (asymmetric)", choices=LOSSES)
    patience: int = opt(15, "early stopping: epochs without a better validation mean AUROC")
    lr_patience: int = opt(5, "ReduceLROnPlateau: epochs without improvement before the LR drops")
    lr_factor: float = opt(0.1, "ReduceLROnPlateau: factor applied to the LR")
    clip_grad: float = opt(1.0, "clip the gradient norm to this (0 = off)")
    augment: bool = opt(True, "random rotation/scale/shift/brightness/contrast on the device")
    hflip: bool = opt(False, "also flip left-right (moves the heart to the wrong side; off by default)")
    # Run.
    output_dir: Path | None = opt(None, "run folder (default: runs/MODEL-YYYYmmdd-HHMMSS)")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    precision: str = opt("auto", "auto = bf16 on GPU, fp32 on CPU", choices=("auto", "fp32", "bf16", "fp16"))
    seed: int = opt(0, "seed for splits, sampling, initialisation and augmentation")
    progress: bool = opt(True, "show progress bars")

    def resolved_output_dir(self) -> Path:
        if self.output_dir is not None:
            return self.output_dir
        return Path("runs") / f"{self.model}-{time.strftime('%Y%m%d-%H%M%S')}"

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def add_arguments(parser: argparse.ArgumentParser, cls: type = TrainConfig) -> None:
    """One `--name` option per dataclass field, typed and documented from the field."""
    hints = {"int": int, "float": float, "str": str, "Path": Path, "Path | None": Path}
    for f in fields(cls):
        default = f.default if f.default is not MISSING else None
        kwargs: dict[str, Any] = {"default": default, "help": f.metadata.get("help", "")}
        if f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        else:
            kwargs["type"] = hints[str(f.type)]
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        if default is not None and f.type != "bool":
            kwargs["help"] += " (default: %(default)s)"
        parser.add_argument(f"--{f.name}", **kwargs)
