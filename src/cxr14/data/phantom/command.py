"""`cxr14 phantom`: the preview sheet, or a phantom dataset in any registered dataset's layout.

Here, above both writers, so that NIH's writer (`writer.py`) and the other layouts' (`layouts.py`, which reuse
NIH's rendering and manifest) import one way."""

from __future__ import annotations

from collections.abc import Callable

from cxr14.config import PhantomConfig
from cxr14.data.phantom.layouts import WRITERS, write_layout
from cxr14.data.phantom.writer import write_dataset, write_preview


def _nih(cfg: PhantomConfig) -> dict:
    assert cfg.out is not None
    return write_dataset(cfg.out, cfg.n_patients, cfg.size, cfg.seed, workers=cfg.workers, progress=cfg.progress)


def _layout(name: str) -> Callable[[PhantomConfig], dict]:
    def write(cfg: PhantomConfig) -> dict:
        assert cfg.out is not None
        return write_layout(cfg.out, name, cfg.n_patients, cfg.size, cfg.seed, cfg.workers, cfg.progress)

    return write


#: One phantom writer per dataset of the registry (a test holds them equal): NIH's own, and the other layouts'.
PHANTOMS: dict[str, Callable[[PhantomConfig], dict]] = {"nih": _nih, **{name: _layout(name) for name in WRITERS}}


def run_phantom(cfg: PhantomConfig) -> dict | None:
    """The preview sheet (--preview), or the dataset folder and a line saying what is in it."""
    if cfg.preview is not None:
        write_preview(cfg.preview, size=cfg.preview_size, seed=cfg.seed)
        print(f"preview written to {cfg.preview}")
        return None
    assert cfg.out is not None  # PhantomConfig refuses neither --out nor --preview
    summary = PHANTOMS[cfg.layout](cfg)
    print(f"phantom dataset in {cfg.out} ({cfg.layout} layout): {summary['n_images']} images of "
          f"{summary['n_patients']} patients")  # fmt: skip
    return summary
