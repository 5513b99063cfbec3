"""cxr14 from Python (a notebook, a script): the same functions the CLI calls, never a second path.

    import cxr14.api as cx
    table = cx.read("chexpert", "data/chexpert", uncertain="zeros")   # a Metadata: names, labels, patients, ...
    parts = cx.splits("nih", "data/nih")                               # {"train": Split, "val": ..., "test": ...}
    films = cx.torch_dataset("nih", "data/nih", "train", image_size=224)  # a torch Dataset of uint8 films
    cx.train(dataset="nih", data_dir="data/nih", output_dir="run")  # any TrainConfig field as a keyword
    model = cx.load("run/best_model.pth")
    model.predict(["film.png", array, pil_image])                      # a dict per film: probabilities, flags

Several datasets read as one with "nih,chexpert" and "A,B" (or mix="mix.toml"), exactly as --dataset and
--data_dir take them. Reader options (labels, uncertain, views, readers, labeler, negative, patient_pattern,
patient_scope, csv) are keyword arguments; each dataset reads those it takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from cxr14.config import TrainConfig
from cxr14.data.datasets.base import Metadata
from cxr14.data.splits import Split

__all__ = ["Model", "load", "phantom", "read", "splits", "torch_dataset", "train"]


def phantom(out: Path | str, layout: str = "nih", n_patients: int = 100, size: int = 256, seed: int = 0,
            workers: int = 1) -> dict:  # fmt: skip
    """A synthetic dataset in `layout`'s files (`cxr14 phantom`): something to try every function on. More than one
    worker process needs a script's `if __name__ == "__main__":` guard (processes start by re-importing it)."""
    from cxr14.config import PhantomConfig
    from cxr14.data.phantom import run_phantom

    summary = run_phantom(PhantomConfig(out=Path(out), layout=layout, n_patients=n_patients, size=size, seed=seed,
                                        workers=workers, progress=False))  # fmt: skip
    assert summary is not None
    return summary


def train(**options: Any) -> dict[str, Any]:
    """`cxr14 train` with these options (TrainConfig's fields, e.g. dataset, data_dir, model, image_size,
    num_epochs, output_dir); returns the test metrics it wrote to metrics.json."""
    from cxr14.training.conductor import train as run

    return run(TrainConfig(**_paths(options)))


def _paths(options: dict[str, Any]) -> dict[str, Any]:
    """Strings given for TrainConfig's path options as Paths, as the CLI's parser makes them."""
    kinds = {f.name: str(f.type) for f in fields(TrainConfig)}
    return {k: Path(v) if isinstance(v, str) and "Path" in kinds.get(k, "") else v for k, v in options.items()}


def _config(dataset: str, data_dir: Path | str, **options: Any) -> TrainConfig:
    """The training config the CLI would build from the same words (every split whole: no sample caps)."""
    return TrainConfig(dataset=dataset, data_dir=Path(data_dir), max_train_samples=0, max_test_samples=0,
                       **_paths(options))  # fmt: skip


def read(dataset: str, data_dir: Path | str = "data", **options: Any) -> Metadata:
    """The table of films of a dataset (or a mix): names, labels (1, 0, -1 unknown) with their names, patients,
    demographics, and the dataset's own split where it has one."""
    from cxr14.data.pipeline.loaders import read_metadata

    return read_metadata(_config(dataset, data_dir, **options))


def splits(dataset: str, data_dir: Path | str = "data", val_fraction: float = 0.1, seed: int = 0,
           **options: Any) -> dict[str, Split]:  # fmt: skip
    """Patient-wise train / val / test splits, as training makes them (official lists, the data's own split, else
    seeded by patient)."""
    from cxr14.data.pipeline.loaders import load_splits

    return load_splits(_config(dataset, data_dir, val_fraction=val_fraction, seed=seed, **options))


def torch_dataset(dataset: str, data_dir: Path | str = "data", split: str = "train", image_size: int = 224,
                  **options: Any) -> Any:  # fmt: skip
    """A torch Dataset over one split: items (uint8 film [1, S, S], target [K] with -1 unknown, index, reason it is
    unreadable, note), from the `cxr14 prepare` cache when one fits, else decoded from the files."""
    from cxr14.data.pipeline.loaders import build_datasets

    cfg = _config(dataset, data_dir, image_size=image_size, **options)
    return build_datasets(cfg, (split,))[split].dataset


@dataclass
class Model:
    """A trained model through the one loader (checkpoints, ensembles, exports), with its labels, temperature,
    thresholds and unusual-film check."""

    loaded: Any  # cxr14.model.loading.LoadedModel

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.loaded.labels)

    def predict(self, images: Sequence[Any]) -> list[dict[str, Any]]:
        """A dict per image (a path, a 2-D uint8 array or a PIL image): each finding's calibrated probability, the
        findings called at the model's thresholds, and whether the film is unusual (with the reason); the same
        rows `cxr14 predict` writes."""
        from cxr14.using.predict import score_films

        return score_films(self.loaded, [_film(x) for x in images])


def _film(image: Any) -> Any:
    from PIL import Image

    from cxr14.data.films.pixels import gray8, stretch8
    from cxr14.data.films.upload import Film, open_film
    from cxr14.errors import UserError

    if isinstance(image, str | Path):
        return open_film(image)
    if isinstance(image, Image.Image):
        return Film(np.array(gray8(image)))
    array = np.asarray(image)
    if array.ndim != 2:
        raise UserError(f"An image array must be 2-D grey (H, W); got shape {array.shape}.")
    return Film(array if array.dtype == np.uint8 else stretch8(array))


def load(path: Path | str, device: str = "auto") -> Model:
    """A model from a best_model.pth, an ensemble (A.pth,B.pth or a manifest) or an export, as every command loads
    it."""
    from cxr14.model.loading import load_model

    return Model(load_model(Path(path), device=device))
