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
from cxr14.config import (
    DemoConfig,
    EvaluateConfig,
    ExportConfig,
    PredictConfig,
    ServeConfig,
    TrainConfig,
    add_arguments,
    from_args,
)
from cxr14.errors import Stopped, UserError

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
    from cxr14.training.conductor import train

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
    from cxr14.judging.evaluate import evaluate

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


def cmd_predict(args: argparse.Namespace) -> None:
    from cxr14.using.predict import run_predict

    run_predict(from_args(PredictConfig, args))


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="score new films (PNG, JPEG, DICOM) with a checkpoint: one row of 14 probabilities per film",
        description="Read PNG, JPEG and DICOM films (files, or folders searched recursively), score them with a "
        "trained model and print one CSV row per film (or JSON lines with --json): the 14 probabilities, "
        "calibrated with the temperatures fitted on validation, and the findings at or above the thresholds "
        "chosen there. Unreadable files are skipped and named. --cam writes heatmap overlays.",
    )
    add_arguments(p, PredictConfig)
    p.set_defaults(func=cmd_predict)


def cmd_report(args: argparse.Namespace) -> None:
    from cxr14.judging.report import write_report

    write_report(args.folder, args.history)  # it logs where


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="(re)build report.html from an evaluation or training run folder",
        description="Build the self-contained report.html of a folder written by `cxr14 evaluate` or `cxr14 train` "
        "(metrics.json, the predictions CSV, and the training history metrics.csv), e.g. after editing or copying "
        "it. Evaluate and train write it themselves.",
    )
    p.add_argument("folder", type=Path, help="the folder holding metrics.json")
    p.add_argument("--history", type=Path, default=None, help="the run's metrics.csv if not found beside it")
    p.set_defaults(func=cmd_report)


def cmd_serve(args: argparse.Namespace) -> None:
    from cxr14.using.serve.runner import serve

    serve(from_args(ServeConfig, args))


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="a local web page and JSON API for a checkpoint: drop a film, see the 14 findings and the heatmaps",
        description="Serve a trained model (best_model.pth) on a small web page and a JSON API (POST /api/predict, "
        "GET /api/model, GET /api/health; OpenAPI docs at /docs), scored exactly as `cxr14 predict`. Listens on "
        "127.0.0.1 (this machine only) unless --host says otherwise; every script and style is served locally. "
        "A research tool, not a diagnostic device. Needs the serve extra: pip install 'cxr14[serve]'.",
    )
    add_arguments(p, ServeConfig)
    p.set_defaults(func=cmd_serve)


def cmd_export(args: argparse.Namespace) -> None:
    from cxr14.using.export.run import run_export

    run_export(from_args(ExportConfig, args))


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a checkpoint as a timm / Hugging Face folder and an ONNX graph, each checked against it",
        description="Turn a best_model.pth into OUT/hf (model.safetensors, config.json and a README.md model card "
        "in the Hugging Face hub's layout: `timm.create_model('local-dir:OUT/hf', pretrained=True)` loads it "
        "without cxr14) and OUT/onnx/model.onnx (uint8 pixels [batch, 1, S, S] in, normalisation and temperature "
        "inside, 'probabilities' and 'logits' [batch, 14] out, any batch size). Each file is then reloaded (timm; "
        "ONNX Runtime on the CPU), fed the same phantom films as the checkpoint, and the export fails if any "
        "probability differs by more than 1e-4; the largest difference is printed. Both outputs also work as "
        "`cxr14 predict --checkpoint`.",
    )
    add_arguments(p, ExportConfig)
    p.set_defaults(func=cmd_export)


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
    from cxr14.training.demo import run_demo

    run_demo(from_args(DemoConfig, args))


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="phantom data + a small ConvNeXt trained from scratch + test AUROC, in minutes on a CPU",
        description="Generate (or reuse) a phantom dataset, train convnext_atto on it through the normal training "
        "path (GPU if present, else CPU), score it on the phantom test split with intervals and a report, and "
        "score its heatmaps against the phantom boxes.",
    )
    add_arguments(p, DemoConfig)
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


def cmd_download(args: argparse.Namespace) -> None:
    from cxr14.data import check, download
    from cxr14.data.archives import parse_only

    if args.check:
        check.check_folder(args.data_dir, deep=args.deep, workers=args.workers, progress=args.progress)
        return
    if args.deep or args.workers is not None:
        raise UserError("--deep and --workers belong to `cxr14 download --check`; add --check to use them.")
    only = parse_only(args.only) if args.only is not None else None
    settings = download.DownloadSettings(
        args.data_dir, only, args.jobs, args.keep_archives, args.base_url, args.urls_file, args.timeout, args.progress
    )
    done = download.download(settings)
    print(f"{len(done)} archive(s) unpacked by this run into {args.data_dir / 'images'}. "
          f"Next: cxr14 download --check --data_dir {args.data_dir}")  # fmt: skip


def add_download(sub: argparse._SubParsersAction) -> None:
    from cxr14.data.archives import URLS_FILE_HELP

    p = sub.add_parser(
        "download",
        help="get NIH's images and metadata into a data folder (resumable, verified), or --check a folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Get ChestX-ray14 into DATA_DIR in one command that can be stopped and run again at any time.

First the metadata is written into DATA_DIR from copies inside the package (no network): both
Data_Entry CSVs (2017 and the 2020 revision), train_val_list.txt, test_list.txt, BBox_List_2017.csv and
Google's adjudicated labels. A file already there with other bytes is kept and reported.

Then NIH's 12 archives (images_01.tar.gz .. images_12.tar.gz, about 42 GiB) are downloaded, --jobs at a
time, with one progress bar. A partial download is kept as images_NN.tar.gz.part and continued from its
last byte by the next run (HTTP Range; a server that ignores Range restarts that file cleanly). Each
archive's MD5 is checked against NIH's published one (a mismatch deletes the file and downloads it once
more, then stops naming the archive); it is then unpacked safely (only images/NAME files: no member
outside DATA_DIR, no links, no devices) into DATA_DIR/images/ and deleted unless --keep_archives. An
archive already in DATA_DIR as images_NN.tar.gz (downloaded by hand) is verified and unpacked without a
network; archives whose images are all present already are skipped, so a second run fetches nothing.
Free disk space is checked first. A host that cannot be reached is reported within seconds.

With --check nothing is downloaded: the folder is inspected the way training reads it (NIH or Kaggle
layout): metadata and CSV version, images missing or not in the CSV, non-PNG files, list names not in the
CSV, empty files and, with --deep, every PNG decoded. Exit status 0 only if training would start cleanly,
else 2; the report ends with the command to run next.

examples:
  cxr14 download --data_dir data                   everything (about 42 GiB)
  cxr14 download --data_dir data --only 1          the first archive alone: 4,999 images to try things on
  cxr14 download --data_dir data --base_url https://mirror.example.org/nih
  cxr14 download --check --data_dir data --deep""",
    )
    p.add_argument("--data_dir", type=Path, default=Path("data"), help="the dataset folder (default: %(default)s)")
    p.add_argument("--only", metavar="N,M-K", help="fetch only these archives, 1..12 (e.g. 1 or 1,2 or 3-12)")
    p.add_argument("--jobs", type=int, default=3, help="archives downloaded at once, 1..12 (default: %(default)s)")
    p.add_argument("--keep_archives", action="store_true", help="keep each images_NN.tar.gz after unpacking it")
    p.add_argument("--base_url", metavar="URL", help="a mirror folder holding images_01.tar.gz .. images_12.tar.gz "
                   "(NIH's MD5s still apply)")  # fmt: skip
    p.add_argument("--urls_file", type=Path, metavar="CSV", help=f"where to get each archive: {URLS_FILE_HELP}")
    p.add_argument("--timeout", type=float, default=30.0, help="connect and read timeout in seconds; the "
                   "reachability probe waits at most 5 (default: %(default)s)")  # fmt: skip
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    check = p.add_argument_group("checking a folder (nothing is downloaded)")
    check.add_argument("--check", action="store_true", help="report whether DATA_DIR is ready to train on")
    check.add_argument("--deep", action="store_true", help="with --check: decode every PNG, list unreadable ones")
    check.add_argument("--workers", type=int, default=None, help="with --deep: decoding processes (default: all "
                       "cores)")  # fmt: skip
    p.set_defaults(func=cmd_download)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr14", description="Train and score chest X-ray classifiers on NIH ChestX-ray14."
    )
    parser.add_argument("--version", action="version", version=f"cxr14 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train(sub)
    add_evaluate(sub)
    add_predict(sub)
    add_report(sub)
    add_serve(sub)
    add_export(sub)
    add_download(sub)
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
        from cxr14.training import distributed  # torch, imported only when there is something to ask

        if not distributed.peer_failed(exc):
            raise
        print(
            "cxr14: error: another process of this torchrun job failed (its error is above, and torchrun names it as "
            "the root cause); this process stops too.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("cxr14: interrupted; files written so far are complete and kept.", file=sys.stderr)
        return 130
    return 0


def _report_to_torchrun(message: str) -> None:
    if "TORCHELASTIC_ERROR_FILE" in os.environ:
        from cxr14.training import distributed

        distributed.report_failure(message)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)
