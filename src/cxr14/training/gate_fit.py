"""Fitting the out-of-distribution gate (`model.gate`): at the end of `cxr14 train`, and `cxr14 fit_gate` for a
checkpoint trained without one.

The training films' and the validation films' gate features come through the one inference pass
(`predict(..., features=True)`): at most `gate.MAX_FIT` training films (a seeded sample), every validation
film. Under torchrun each process scores its share and the features are joined before the fit.
"""

from __future__ import annotations

import logging

import numpy as np

from cxr14.config import FitGateConfig, TrainConfig
from cxr14.data.pipeline.loaders import SplitData, build_datasets, make_loader
from cxr14.data.pipeline.transforms import DeviceTransform
from cxr14.errors import UserError
from cxr14.model import checkpoint, gate
from cxr14.model.device import resolve_device, resolve_precision
from cxr14.model.gate import Gate
from cxr14.model.inference import Classifier, feature_layout, predict
from cxr14.training import distributed
from cxr14.training.distributed import DistInfo

log = logging.getLogger(__name__)


def fit_gate(classifier: Classifier, data: dict[str, SplitData], cfg: TrainConfig, info: DistInfo) -> Gate | None:
    """The gate for `classifier`'s model from the train and val splits of `data` (None when val is too small)."""
    n = len(data["train"].dataset)
    sample = np.sort(np.random.default_rng(cfg.seed).choice(n, min(n, gate.MAX_FIT), replace=False))
    features = {}
    for name, rows in (("train", sample), ("val", None)):
        loader = make_loader(data[name].dataset, cfg, False, classifier.device, info.rank, info.world_size, rows)
        pred = distributed.merge_predictions(
            predict(classifier, loader, desc=f"gate: {name} features", progress=cfg.progress and info.is_main,
                    features=True), info,
        )  # fmt: skip
        features[name] = pred.features if pred.features is not None else np.zeros((0, 0))
    return gate.fit(features["train"], features["val"], feature_layout(classifier.model))


def run_fit_gate(cfg: FitGateConfig) -> Gate | None:
    """`cxr14 fit_gate`: fit the gate for a checkpoint on its own training data and store it in the checkpoint."""
    from cxr14.judging.evaluate import data_config_for

    state = checkpoint.load(cfg.checkpoint)
    if state.get("gate") and not cfg.force:
        raise UserError(f"{cfg.checkpoint} already carries an out-of-distribution gate; pass --force to fit it again "
                        f"(the checkpoint is rewritten only once the new gate is fitted).")  # fmt: skip
    out = cfg.out or cfg.checkpoint
    train_cfg = data_config_for(cfg, state.get("config", {}))
    data = build_datasets(train_cfg, ("train", "val"))
    model, data_config = checkpoint.model_from_checkpoint(state)
    device = resolve_device(cfg.device)
    model.to(device).eval()
    transform = DeviceTransform(data_config.mean, data_config.std, data_config.in_chans, None)
    classifier = Classifier(model, transform, resolve_precision("auto", device))
    info = DistInfo(0, 1, 0, device)
    fitted = fit_gate(classifier, data, train_cfg, info)
    if fitted is None:
        raise UserError(
            f"The gate was not fitted: the validation split of {cfg.data_dir} has fewer than {gate.MIN_VALIDATION} "
            f"films to set its threshold on. {cfg.checkpoint} is unchanged."
        )
    state["gate"] = fitted.to_state()
    checkpoint.atomic_save(state, out)
    print(f"out-of-distribution gate stored in {out} (threshold {fitted.threshold:.3f}, {fitted.n_fit} training and "
          f"{fitted.n_validation} validation films)")  # fmt: skip
    return fitted

