"""`cxr14 train`: fit on train, select on validation mean AUROC, score the best model on test.

The conductor: setup -> fit -> test, with the mechanisms in their own modules (step: the optimizer step and
the epoch; model.inference: the one inference pass; model.checkpoint: what goes to disk; resume: what resuming
reads; distributed: torchrun; runlog: metrics.csv and TensorBoard; signals: SIGTERM/SIGINT). The run folder
explains itself: config.json, train.log, metrics.csv (one row per epoch), last.pth, best_model.pth,
metrics.json (test) and test_predictions.csv.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader

from cxr14.config import TrainConfig
from cxr14.data.pipeline.loaders import SplitData, build_datasets, make_loader
from cxr14.data.pipeline.transforms import AugmentConfig, DeviceTransform
from cxr14.errors import Stopped, UserError
from cxr14.judging import evaluate
from cxr14.judging.evaluate import Scoring
from cxr14.judging.metrics import AurocResult, auroc
from cxr14.judging.thresholds import choose_on_validation
from cxr14.model import checkpoint
from cxr14.model.create import DataConfig, check_image_size, create_model
from cxr14.model.decision import ValidationChoice, apply_temperature
from cxr14.model.device import Precision, resolve_precision, unwrap, use_fast_kernels
from cxr14.model.gate import Gate
from cxr14.model.inference import Classifier, Predictions, predict
from cxr14.model.loading import model_card
from cxr14.training import distributed, resume
from cxr14.training.distributed import DistInfo
from cxr14.training.finetune import initialise
from cxr14.training.gate_fit import fit_gate
from cxr14.training.loss import make_loss
from cxr14.training.runlog import TensorBoard, write_metrics_csv
from cxr14.training.schedule import make_scheduler
from cxr14.training.signals import StopRequest
from cxr14.training.step import SYNC_EVERY, EpochProgress, Optim, Stepper, train_one_epoch

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where the run stands between epochs; saved in last.pth."""

    epoch: int = 0  # epochs completed
    best: float = -1.0
    since_best: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Run:
    """The pieces of one training run, built once by `setup` and passed around."""

    cfg: TrainConfig
    dist: DistInfo
    out: Path
    precision: Precision
    data: dict[str, SplitData]
    data_config: DataConfig
    stepper: Stepper
    scheduler: Any  # ReduceLROnPlateau or timm's CosineLRScheduler
    loaders: dict[str, DataLoader]
    eval_transform: DeviceTransform
    progress: Progress = field(default_factory=Progress)
    partial: EpochProgress | None = None  # an epoch resumed part-way
    tensorboard: TensorBoard | None = None
    log_file: logging.Handler | None = None
    init: dict[str, Any] | None = None  # what --init kept and made new (fine-tuning)

    @property
    def labels(self) -> tuple[str, ...]:
        """The data's label set: the head's outputs, in order."""
        return self.data["train"].split.label_names

    @property
    def show(self) -> bool:
        return self.cfg.progress and self.dist.is_main

    @property
    def generators(self) -> dict[str, torch.Generator]:
        return {name: loader.generator for name, loader in self.loaders.items()}


def prepare_output_dir(cfg: TrainConfig, resuming: bool, is_main: bool) -> tuple[Path, logging.Handler | None]:
    """Create the run folder and its train.log; refuse to overwrite the checkpoints of an earlier run."""
    out = cfg.resolved_output_dir()
    if not resuming and ((out / "best_model.pth").exists() or (out / "last.pth").exists()):
        raise UserError(
            f"{out} already holds a training run (best_model.pth / last.pth). Pass --resume auto to continue it, "
            f"choose another --output_dir, or move that run away first; cxr14 does not overwrite checkpoints."
        )
    if not is_main:
        return out, None
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("cxr14").addHandler(handler)
    return out, handler


def build_model(
    cfg: TrainConfig, info: DistInfo, labels: tuple[str, ...], resuming: bool
) -> tuple[torch.nn.Module, DataConfig, dict[str, Any] | None]:
    """The model for the data's label set on its device (fine-tuned from --init unless resuming), in the memory
    format asked for, wrapped for DDP and compiled when asked; and what --init kept."""
    model, data_config = create_model(cfg.model, cfg.pretrained, cfg.pretrained_path, cfg.image_size, len(labels))
    init = None
    if cfg.init is not None and not resuming:
        init = initialise(model, cfg.init, cfg.model, cfg.image_size, labels)
    model.to(info.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if info.distributed:
        model = distributed.wrap(model, info)
    if cfg.compile:
        model = torch.compile(model)
    return model, data_config, init


def setup(cfg: TrainConfig, info: DistInfo) -> Run:
    """Seed, pick precision, build data, model, loss, optimizer, schedule; restore a run being resumed."""
    check_image_size(cfg.model, cfg.image_size)  # a size the model cannot take fails before data or a run folder
    torch.manual_seed(cfg.seed)  # initialisation: the same on every process (DDP also broadcasts rank 0's)
    precision = resolve_precision(cfg.precision, info.device)
    use_fast_kernels(info.device)
    resume_from = resume.resume_path(cfg.resume, cfg.resolved_output_dir())
    state = resume.load_resumable(resume_from, cfg.to_json()) if resume_from else None
    data = build_datasets(cfg)  # bad data fails here, before a run folder exists
    model, data_config, init = build_model(cfg, info, data["train"].split.label_names, state is not None)
    out, log_file = prepare_output_dir(cfg, state is not None, info.is_main)
    if info.is_main:
        if state is not None:  # resuming: --init was applied when the run began; keep its record
            init = state["config"].get("init_record")
        train = data["train"].split
        sources = None if not train.origins else [
            {"name": o.name, "dataset": o.dataset, "data_dir": str(o.data_dir), "weight": o.weight,
             "train_films": int((train.origin == k).sum())} for k, o in enumerate(train.origins)]  # fmt: skip
        cfg.save(out / "config.json", {"labels_trained": list(train.label_names), "init": init, "sources": sources})
    torch.manual_seed(cfg.seed + info.rank)  # augmentation differs between processes
    loaders = {
        name: make_loader(d.dataset, cfg, name == "train", info.device, info.rank, info.world_size)
        for name, d in data.items()
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(loaders["train"]) // cfg.accum_steps)
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    # Warm-up: the average's decay grows with the step (timm's 1 - (1 + step)^(-2/3), capped at --ema), so a short
    # run's average is not still carrying the random initial weights at its end (0.9998^2000 = 67% of them).
    ema = ModelEmaV3(unwrap(model), decay=cfg.ema, use_warmup=True) if cfg.ema else None
    aug = AugmentConfig(hflip=cfg.hflip).scaled(cfg.aug_strength) if cfg.augment else None
    d = data_config
    stepper = Stepper(
        model,
        DeviceTransform(d.mean, d.std, d.in_chans, aug, cfg.channels_last),
        make_loss(cfg.loss),
        Optim(optimizer, precision.make_scaler(), cfg.clip_grad),
        precision,
        cfg.accum_steps,
        ema,
        scheduler.step_update if cfg.sched == "cosine" else None,
    )
    run = Run(cfg, info, out, precision, data, data_config, stepper, scheduler, loaders,
              DeviceTransform(d.mean, d.std, d.in_chans, None, cfg.channels_last), log_file=log_file,
              init=init)  # fmt: skip
    if cfg.tensorboard and info.is_main:
        run.tensorboard = TensorBoard(out / "tensorboard")
    if state is not None:
        restore(run, state, resume_from)
    describe(run)
    return run


def describe(run: Run) -> None:
    """The run's shape in the log: where, on what, how big a batch, which model."""
    cfg, info = run.cfg, run.dist
    log.info("run folder %s; device %s; precision %s", run.out, info.device, run.precision.dtype or "fp32")
    global_batch = cfg.batch_size * info.world_size * cfg.accum_steps
    log.info(
        "global batch %d = %d per process x %d process(es) x %d accumulation step(s)",
        global_batch, cfg.batch_size, info.world_size, cfg.accum_steps,
    )  # fmt: skip
    n_params = sum(p.numel() for p in unwrap(run.stepper.model).parameters()) / 1e6
    extras = [x for x, on in (("EMA", cfg.ema), ("channels_last", cfg.channels_last), ("compiled", cfg.compile)) if on]
    log.info(
        "model %s (%.1fM parameters), %d px, loss %s, %s schedule%s",
        cfg.model, n_params, cfg.image_size, cfg.loss, cfg.sched, f", {', '.join(extras)}" if extras else "",
    )  # fmt: skip


def score(run: Run, split: str, model: torch.nn.Module, gate: Gate | None = None) -> tuple[AurocResult, Predictions]:
    """Predict a whole split (every process its shard, joined) and compute its AUROC table."""
    classifier = Classifier(model, run.eval_transform, run.precision, gate)
    pred = predict(classifier, run.loaders[split], desc=split, progress=run.show)
    pred = distributed.merge_predictions(pred, run.dist)
    if pred.n_bad:
        log.warning("%s: %d unreadable image(s) skipped", split, pred.n_bad)
    if len(pred.index) == 0:
        raise UserError(f"No readable image in the {split} split; see the skipped-image count above.")
    return auroc(pred.targets, pred.logits, run.labels), pred


def _state(run: Run, best_weights: torch.nn.Module | None = None, **extra: Any) -> dict[str, Any]:
    config = {**run.cfg.to_json(), "init_record": run.init}  # what --init kept travels with the weights
    common = {"epoch": run.progress.epoch, "best_metric": run.progress.best, "config": config}
    model = best_weights if best_weights is not None else run.stepper.model
    return checkpoint.make_state(model, run.cfg.model, run.data_config, run.labels, **common, **extra)


def save_last(run: Run, partial: EpochProgress | None = None, loader_state: torch.Tensor | None = None) -> None:
    """last.pth: everything needed to continue exactly (weights, optimizer, schedule, EMA, RNGs, history).

    Every process contributes its random state; rank 0 writes. `partial` marks an epoch stopped part-way,
    with the train loader's generator as it was when that epoch began.
    """
    rng = resume.rng_state(run.generators)
    if loader_state is not None:
        rng["generators"]["train"] = loader_state
    rngs = distributed.gather(rng, run.dist)
    if not run.dist.is_main:
        return
    s = run.stepper
    state = _state(
        run,
        optimizer=s.optim.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        scaler=s.optim.scaler.state_dict(),
        ema=s.ema.module.state_dict() if s.ema is not None else None,
        updates=s.updates,
        since_best=run.progress.since_best,
        history=run.progress.history,
        partial=vars(partial) if partial is not None else None,
        rng=rngs,
    )
    checkpoint.atomic_save(state, run.out / "last.pth")


def restore(run: Run, state: dict[str, Any], path: Path) -> None:
    """Put a run back where last.pth left it."""
    if list(state["labels"]) != list(run.labels):
        raise UserError(
            f"{path} was trained on the labels {state['labels']}, and this data has {list(run.labels)}: a run resumes "
            f"on the data it started with. Pass that data, or start a new run (--init {path} fine-tunes from it)."
        )
    s = run.stepper
    unwrap(s.model).load_state_dict(state["model"])
    s.optim.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    s.optim.scaler.load_state_dict(state["scaler"])
    if s.ema is not None:
        if state["ema"] is None:
            raise UserError(f"{path} was written without --ema; resume without it, or start a new run.")
        s.ema.module.load_state_dict(state["ema"])
    s.updates = state["updates"]
    run.progress = Progress(state["epoch"], state["best_metric"], state["since_best"], list(state["history"]))
    if state["partial"] is not None:
        run.partial = EpochProgress(**{k: v for k, v in state["partial"].items() if k != "stopped"})
    rngs = state["rng"]
    if len(rngs) != run.dist.world_size:
        log.warning("resuming %d process(es) from a run of %d: random streams differ", run.dist.world_size, len(rngs))
    resume.restore_rng(rngs[min(run.dist.rank, len(rngs) - 1)], run.generators)
    where = f"step {run.partial.step} of epoch {run.progress.epoch + 1}" if run.partial else f"epoch {state['epoch']}"
    log.info("resumed from %s (after %s; best validation mean AUROC %.4f)", path, where, run.progress.best)


def save_best(run: Run, weights: torch.nn.Module, source: str) -> None:
    """best_model.pth: the weights that scored best on validation (the model's own or their EMA)."""
    if run.dist.is_main:
        checkpoint.atomic_save(_state(run, weights, weights=source), run.out / "best_model.pth")


def validate(run: Run) -> tuple[AurocResult, AurocResult | None]:
    """Validation mean AUROC of the model, and of its EMA when there is one."""
    model_val, _ = score(run, "val", run.stepper.model)
    ema = run.stepper.ema
    return model_val, (score(run, "val", ema.module)[0] if ema is not None else None)


def end_epoch(run: Run, epoch: int, ep: EpochProgress, seconds: float, seen_before: int) -> bool:
    """Validate, step the plateau schedule, keep the best, checkpoint, log. True when the run should stop early."""
    val, val_ema = validate(run)
    candidates = [(val.mean, "model", unwrap(run.stepper.model), val)]
    if val_ema is not None:
        candidates.append((val_ema.mean, "ema", run.stepper.ema.module, val_ema))
    metric, source, weights, shown = max(candidates, key=lambda c: c[0])
    p = run.progress
    # A fresh run's first epoch is kept even when no validation AUROC is defined (a small validation split with no
    # positive: nan), so that a best_model.pth always exists; later epochs replace it only by scoring higher.
    improved = metric > p.best or (p.best < 0 and not p.history)
    p.best, p.since_best, p.epoch = max(p.best, metric), 0 if improved else p.since_best + 1, epoch
    optimizer = run.stepper.optim.optimizer
    lr_before = optimizer.param_groups[0]["lr"]
    if run.cfg.sched == "plateau":
        run.scheduler.step(metric)
    lr = optimizer.param_groups[0]["lr"]
    seen = distributed.sum_over_ranks(ep.seen, run.dist)
    loss = distributed.sum_over_ranks(ep.loss_sum, run.dist) / max(seen, 1)
    row = {
        "epoch": epoch,
        "train_loss": round(loss, 6),
        "val_mean_auroc": round(val.mean, 6),
        "val_ema_mean_auroc": round(val_ema.mean, 6) if val_ema is not None else None,
        "best_val_mean_auroc": round(p.best, 6),
        "lr": lr,
        "images_per_s": round(distributed.sum_over_ranks(ep.seen - seen_before, run.dist) / max(seconds, 1e-9), 1),
        "seconds": round(seconds, 2),
        "n_bad": int(distributed.sum_over_ranks(ep.n_bad, run.dist)),
    }
    p.history.append(row)
    if improved:
        save_best(run, weights, source)
    save_last(run)
    if run.dist.is_main:
        write_metrics_csv(run.out / "metrics.csv", p.history)
        if run.tensorboard is not None:
            run.tensorboard.epoch(row, shown.per_class)
    ema_text = f", EMA {val_ema.mean:.4f}" if val_ema is not None else ""
    log.info(
        "epoch %d: train loss %.4f, val mean AUROC %.4f%s (best %.4f%s)%s, %.0f img/s",
        epoch, loss, val.mean, ema_text, p.best, f", new best: {source} weights" if improved else "",
        f", lr {lr_before:.2e} -> {lr:.2e}" if lr != lr_before else "", row["images_per_s"],
    )  # fmt: skip
    if row["n_bad"]:
        log.warning("epoch %d: %d unreadable training image(s) skipped", epoch, row["n_bad"])
    if p.since_best >= run.cfg.patience:
        log.info("early stop: no better validation mean AUROC for %d epochs", p.since_best)
        return True
    return False


def fit(run: Run, stop: StopRequest) -> bool:
    """Epochs until --num_epochs, early stopping, or a stop request. True when stopped by a signal."""
    sampler = run.loaders["train"].sampler
    loader = run.loaders["train"]

    def should_stop(updates: int) -> bool:
        # Alone: look at the flag every step. Under torchrun all processes must stop at the same step, which
        # takes a collective: ask every SYNC_EVERY steps, when the loss is read back anyway.
        if run.dist.distributed and updates % SYNC_EVERY:
            return False
        return distributed.any_rank(stop.requested, run.dist)

    for epoch in range(run.progress.epoch + 1, run.cfg.num_epochs + 1):
        start = run.partial or EpochProgress()
        run.partial = None
        sampler.set_epoch(epoch)
        sampler.skip = start.step * run.cfg.batch_size
        loader_state = loader.generator.get_state()
        t0 = time.perf_counter()
        ep = train_one_epoch(run.stepper, loader, start, should_stop, f"epoch {epoch}/{run.cfg.num_epochs}", run.show)
        if ep.stopped:
            save_last(run, ep, loader_state)
            return True
        if end_epoch(run, epoch, ep, time.perf_counter() - t0, start.seen):
            return False
        if distributed.any_rank(stop.requested, run.dist):
            return True
    return False


def load_best(run: Run) -> dict[str, Any]:
    """Put best_model.pth's weights into the model (every process) and return the checkpoint."""
    best = checkpoint.load(run.out / "best_model.pth")
    unwrap(run.stepper.model).load_state_dict(best["model"])
    return best


def choose_thresholds(run: Run) -> tuple[ValidationChoice, Predictions]:
    """Temperature (with --calibrate) and Youden thresholds on validation, once the weights are final: never on
    test. Also the validation predictions they were chosen on."""
    _, pred = score(run, "val", unwrap(run.stepper.model))
    return choose_on_validation(pred.targets, pred.logits, calibrate=run.cfg.calibrate), pred


def finish_best(run: Run, best: dict[str, Any]) -> tuple[ValidationChoice, Gate | None, Predictions]:
    """What best_model.pth learns on validation after its weights: thresholds (and temperatures), and the
    out-of-distribution gate (fitted on training films, its threshold on validation). Written once, atomically."""
    choice, val = choose_thresholds(run)
    model = unwrap(run.stepper.model)
    fitted = fit_gate(Classifier(model, run.eval_transform, run.precision), run.data, run.cfg, run.dist)
    if run.dist.is_main:
        best["calibration"] = choice.to_json()
        if fitted is not None:
            best["gate"] = fitted.to_state()
        checkpoint.atomic_save(best, run.out / "best_model.pth")
    log.info("thresholds%s%s chosen on validation and stored in best_model.pth", " and temperatures" *
             run.cfg.calibrate, ", and the out-of-distribution gate," * (fitted is not None))  # fmt: skip
    return choice, fitted, val


def test(run: Run) -> dict[str, Any]:
    """Score the best weights on test: metrics.json (with intervals), per_class.csv, test_predictions.csv."""
    best = load_best(run)
    choice, fitted, val = finish_best(run, best)
    _, pred = score(run, "test", unwrap(run.stepper.model), fitted)
    if not run.dist.is_main:
        return {}
    split = run.data["test"].split.take(pred.index)
    metrics = evaluate.score(split, pred.logits, choice, Scoring(seed=run.cfg.seed), evaluate.data_record(run.cfg),
                             ood=pred.ood)  # fmt: skip
    metrics["validation_sources"] = evaluate.by_source(run.data["val"].split.take(val.index),
                                                       apply_temperature(val.logits, choice.temperature),
                                                       Scoring(seed=run.cfg.seed))  # fmt: skip
    probs = apply_temperature(pred.logits, choice.temperature)
    evaluate.write_outputs(run.out, metrics, split, probs, model_card(best, run.out / "best_model.pth"))
    return metrics


def resume_hint(run: Run) -> str:
    """The command that continues this run."""
    argv = [a for a in sys.argv[1:] if not a.startswith("--resume")]
    cmd = shlex.join([Path(sys.argv[0]).name, *argv])
    if "--output_dir" not in argv:
        cmd += f" --output_dir {shlex.quote(str(run.out))}"
    return f"{cmd} --resume auto"


def train(cfg: TrainConfig) -> dict[str, Any]:
    """The whole job behind `cxr14 train`, `python main.py` and each process of `torchrun main.py`.

    Returns the test metrics (metrics.json's content); raises Stopped when a signal stopped the run (last.pth
    then holds where it was).
    """
    with distributed.process_group(cfg.device, cfg.dist_timeout) as info:
        if not info.is_main:
            logging.getLogger("cxr14").setLevel(logging.ERROR)  # logs and files from rank 0 only
        with StopRequest() as stop:
            run = setup(cfg, info)
            try:
                if fit(run, stop):
                    log.warning(
                        "stopped by %s; %s holds the run. Resume with: %s",
                        stop.signal_name, run.out / "last.pth", resume_hint(run),
                    )  # fmt: skip
                    raise Stopped(stop.exit_status)
                result = test(run)
                log.info("outputs in %s (best_model.pth, metrics.json, per_class.csv, metrics.csv)", run.out)
                return result
            finally:
                if run.tensorboard is not None:
                    run.tensorboard.close()
                if run.log_file is not None:
                    logging.getLogger("cxr14").removeHandler(run.log_file)
                    run.log_file.close()
