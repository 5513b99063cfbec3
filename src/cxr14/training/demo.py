"""`cxr14 demo`: phantom data -> a small ConvNeXt trained from scratch -> test AUROC, in minutes on a CPU.

It runs the normal path (`cxr14 prepare`'s cache, then the same `train()` as `cxr14 train`), with settings sized
for a 2-core laptop: convnext_atto from scratch at 96 px, on 1,200 phantom patients rendered at
256 px, 12 epochs, asymmetric loss (the best test AUROC of the three losses in our demo runs).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from cxr14.config import DemoConfig, EvaluateConfig, PrepareConfig, TrainConfig
from cxr14.data import phantom
from cxr14.data.pipeline.loaders import prepare_cache
from cxr14.judging.evaluate import evaluate
from cxr14.training.conductor import train

log = logging.getLogger(__name__)


def demo_config(s: DemoConfig) -> TrainConfig:
    """The TrainConfig the demo trains with: everything else is `cxr14 train`'s default."""
    out = s.output_dir or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    return TrainConfig(
        data_dir=s.data_dir,
        output_dir=out,
        model="convnext_atto",
        image_size=s.image_size,
        batch_size=s.batch_size,
        num_workers=min(4, os.cpu_count() or 1),
        max_train_samples=0,
        max_test_samples=0,
        num_epochs=s.epochs,
        learning_rate=s.learning_rate,
        loss=s.loss,
        weight_decay=0.05,
        patience=s.epochs,
        seed=s.seed,
        device=s.device,
        progress=s.progress,
    )


def run_demo(s: DemoConfig) -> dict[str, Any]:
    """Make (or reuse) the phantom set, train on it, score on its test split, say where things are."""
    start = time.perf_counter()
    if phantom.is_complete(s.data_dir, s.n_patients, s.phantom_size, s.seed):
        log.info("phantom data: reusing %s", s.data_dir)
    else:
        log.info("phantom data: rendering %d patients at %d px into %s", s.n_patients, s.phantom_size, s.data_dir)
        phantom.write_dataset(s.data_dir, s.n_patients, s.phantom_size, s.seed, progress=s.progress)
    # Decode the PNGs once at the training size (seconds), so that every epoch's cores go to the model.
    prepare_cache(PrepareConfig(data_dir=s.data_dir, image_size=s.image_size, progress=s.progress))
    cfg = demo_config(s)
    result = train(cfg)
    where = f"{cfg.output_dir} (report.html, metrics.json, best_model.pth, metrics.csv, train.log)"
    if s.bbox:
        # Where did the model look? The phantom writer boxed a quarter of its drawn signs on test images.
        boxes = EvaluateConfig(checkpoint=cfg.output_dir / "best_model.pth", data_dir=s.data_dir, bbox=True,
                               out=cfg.output_dir / "localisation", device=s.device, progress=s.progress)  # fmt: skip
        result = {**result, "localisation": evaluate(boxes)["localisation"]}
        where += f"; heatmaps against the boxes: {boxes.out / 'report.html'}"
    log.info(
        "demo finished in %.1f min: mean test AUROC %.3f. Outputs: %s; data: %s",
        (time.perf_counter() - start) / 60, result["mean_auroc"], where, s.data_dir,
    )  # fmt: skip
    return result
