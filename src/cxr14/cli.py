"""The `cxr14` command: parse -> config -> call. No logic lives here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from cxr14 import __version__
from cxr14.config import EvaluateConfig, TrainConfig, add_arguments, from_args
from cxr14.errors import Stopped, UserError
from cxr14.loss import LOSSES

Command = Callable[[argparse.Namespace], object]


class TqdmHandler(logging.Handler):
    """Log lines printed through tqdm, so they do not tear an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(verbose: bool = False) -> None:
    logger = logging.getLogger("cxr14")
    logger.handlers[:] = [TqdmHandler()]
    logger.handlers[0].setFormatter(logging.Formatter("%(levelname).1s %(message)s"))
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def cmd_train(args: argparse.Namespace) -> None:
    from cxr14.train import train

    train(from_args(TrainConfig, args))


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier on NIH ChestX-ray14 (same options as `python main.py`)",
        description="Train a timm model (ConvNeXt by default) on the official patient-wise split, select the "
        "best epoch by validation mean AUROC and score it on the test split.",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_train)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from cxr14.evaluate import evaluate

    evaluate(from_args(EvaluateConfig, args))


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint on a split: AUROC with patient-bootstrap intervals, operating points, calibration, "
        "subgroups, radiologists' reads, report.html",
        description="Score a trained model (best_model.pth) on the test (or validation) split of a data folder, "
        "rebuilt exactly as its training run split it. Per finding: AUROC with a 95% interval from a bootstrap "
        "over patients, AUPRC, prevalence, and sensitivity/specificity/PPV/NPV/F1 at the thresholds chosen on "
        "validation; the mean AUROC with its interval; AUROC by sex, age band and view; calibration; Google's "
        "radiologist-adjudicated labels when google2019_nih-chest-xray-labels.csv is in the data folder.",
    )
    add_arguments(p, EvaluateConfig)
    p.set_defaults(func=cmd_evaluate)


def cmd_phantom(args: argparse.Namespace) -> None:
    from cxr14.data import phantom

    if args.preview:
        phantom.write_preview(args.preview, size=args.preview_size, seed=args.seed)
        print(f"preview written to {args.preview}")
        return
    if args.out is None:
        raise UserError("cxr14 phantom needs --out DIR (the dataset folder) or --preview FILE.png.")
    summary = phantom.write_dataset(args.out, args.n_patients, args.size, args.seed, workers=args.workers)
    print(f"phantom dataset in {args.out}: {summary['n_images']} images of {summary['n_patients']} patients")


def add_phantom(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantom",
        help="write a synthetic NIH-format dataset (or a preview sheet of its findings)",
        description="Render synthetic frontal chest radiographs with a visible sign for each of the 14 findings, "
        "laid out exactly like NIH's download: Data_Entry_2017.csv, images/, train_val_list.txt, test_list.txt. "
        "Deterministic from --seed; an existing complete set with the same settings is reused.",
    )
    p.add_argument("--out", type=Path, help="dataset folder to write")
    p.add_argument("--n_patients", type=int, default=1000, help="patients (1-8 images each) (default: %(default)s)")
    p.add_argument("--size", type=int, default=1024, help="image side in pixels (default: %(default)s, as NIH)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--preview", type=Path, help="instead: write a labelled contact sheet PNG to this file")
    p.add_argument("--preview_size", type=int, default=256, help="panel size of the preview (default: %(default)s)")
    p.set_defaults(func=cmd_phantom)


def cmd_demo(args: argparse.Namespace) -> None:
    from cxr14.demo import DemoSettings, run_demo

    names = {f for f in DemoSettings.__dataclass_fields__}
    run_demo(DemoSettings(**{k: v for k, v in vars(args).items() if k in names}))


def add_demo(sub: argparse._SubParsersAction) -> None:
    from cxr14.demo import DemoSettings

    d = DemoSettings()
    p = sub.add_parser(
        "demo",
        help="phantom data + a small ConvNeXt trained from scratch + test AUROC, in minutes on a CPU",
        description="Generate (or reuse) a phantom dataset, train convnext_atto on it through the normal training "
        "path (GPU if present, else CPU), score it on the phantom test split and print the per-class AUROC.",
    )
    p.add_argument("--data_dir", type=Path, default=d.data_dir, help="phantom folder (default: %(default)s)")
    p.add_argument("--output_dir", type=Path, default=None, help="run folder (default: runs/demo-TIMESTAMP)")
    p.add_argument("--n_patients", type=int, default=d.n_patients, help="phantom patients (default: %(default)s)")
    p.add_argument("--phantom_size", type=int, default=d.phantom_size, help="phantom px (default: %(default)s)")
    p.add_argument("--image_size", type=int, default=d.image_size, help="training px (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help="batch size (default: %(default)s)")
    p.add_argument("--learning_rate", type=float, default=d.learning_rate, help="AdamW LR (default: %(default)s)")
    p.add_argument("--loss", default=d.loss, choices=LOSSES, help="training loss (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for data and training (default: %(default)s)")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    p.set_defaults(func=cmd_demo)


def cmd_prepare(args: argparse.Namespace) -> None:
    from cxr14.data.loaders import prepare_cache

    info = prepare_cache(args.data_dir, args.image_size, args.cache_dir, args.csv, args.on_bad_image, args.workers)
    skipped = f", {info.n_bad} unreadable image(s) marked bad" if info.n_bad else ""
    print(f"cache ready: {info.directory} ({info.n_images} images at {info.size} px{skipped})")


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="decode every image once into a resized uint8 cache that training reads instead of PNGs",
        description="Decode and resize every image named in the metadata CSV once, in parallel, into a "
        "memory-mapped uint8 array (DATA_DIR/cache/cache_SIZE by default). Training at SIZE or less then reads "
        "pixels from it instead of decoding PNGs every epoch. Interrupted runs resume; a cache whose files "
        "changed is detected and rebuilt where needed.",
    )
    p.add_argument("--data_dir", type=Path, default=Path("data"), help="dataset folder (default: %(default)s)")
    p.add_argument("--image_size", type=int, default=384, help="cache image side in px (default: %(default)s)")
    p.add_argument("--cache_dir", type=Path, default=None, help="where caches go (default: DATA_DIR/cache)")
    p.add_argument("--csv", type=Path, default=None, help="metadata CSV if not in --data_dir")
    p.add_argument("--on_bad_image", choices=("fail", "skip"), default="fail", help="missing/corrupt images")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.set_defaults(func=cmd_prepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr14", description="Train and score chest X-ray classifiers on NIH ChestX-ray14."
    )
    parser.add_argument("--version", action="version", version=f"cxr14 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train(sub)
    add_evaluate(sub)
    add_prepare(sub)
    add_phantom(sub)
    add_demo(sub)
    return parser


def run(func: Command, args: argparse.Namespace) -> int:
    """Call a command; user errors become one paragraph on stderr and exit status 2."""
    setup_logging(getattr(args, "verbose", False))
    try:
        func(args)
    except UserError as exc:
        print(f"cxr14: error: {exc}", file=sys.stderr)
        _report_to_torchrun(str(exc))
        return 2
    except Stopped as stop:
        return stop.status
    except Exception as exc:
        from cxr14 import distributed  # torch, imported only when there is something to ask

        if not distributed.peer_failed(exc):
            raise
        print(
            "cxr14: error: another process of this torchrun job failed (its error is above, and torchrun names it as "
            "the root cause); this process stops too.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("cxr14: interrupted; checkpoints written so far are complete and kept.", file=sys.stderr)
        return 130
    return 0


def _report_to_torchrun(message: str) -> None:
    if "TORCHELASTIC_ERROR_FILE" in os.environ:
        from cxr14 import distributed

        distributed.report_failure(message)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)
