"""The `cxr14` command: one table of commands; parse -> config -> call. No logic lives here.

Each `Command` names its config dataclass (whose fields are the options: `cxr14.config`), the function that
runs it (imported only when the command runs, so `cxr14 --help` never loads torch) and its help texts. A command
named with a space ("dicom predict") is a sub-command of a group (`cxr14 dicom predict`): the group's parser holds
its own sub-parsers; GROUPS gives the group's help.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm import tqdm

from cxr14 import __version__
from cxr14.config import (
    CompareConfig,
    DemoConfig,
    DicomListenConfig,
    DicomPredictConfig,
    DownloadConfig,
    EvaluateConfig,
    ExportConfig,
    FitGateConfig,
    PhantomConfig,
    PredictConfig,
    PrepareConfig,
    ReportConfig,
    ServeConfig,
    TrainConfig,
    add_arguments,
    from_args,
    parse_with_preset,
)
from cxr14.errors import Stopped, UserError


@dataclass(frozen=True)
class Command:
    """One subcommand: its options (a config class), what runs it ("module:function", called with the config)."""

    name: str
    config: type
    target: str
    help: str
    description: str
    preformatted: bool = False  # the description keeps its own line breaks (examples, paragraphs)

    def call(self, config: object) -> object:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)(config)


DOWNLOAD_DESCRIPTION = """\
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
  cxr14 download --check --data_dir data --deep"""

COMMANDS: tuple[Command, ...] = (
    Command(
        "train", TrainConfig, "cxr14.training.conductor:train",
        "train a classifier on NIH ChestX-ray14 (same options as `python main.py`)",
        "Train a timm model (ConvNeXt by default) on the official patient-wise split, select the best epoch by "
        "validation mean AUROC and score it on the test split.",
    ),
    Command(
        "evaluate", EvaluateConfig, "cxr14.judging.evaluate:evaluate",
        "score a checkpoint on a split: AUROC with patient-bootstrap intervals, operating points, calibration, "
        "subgroups, radiologists' reads, report.html",
        "Score a trained model (best_model.pth) on the test (or validation) split of a data folder, rebuilt "
        "exactly as its training run split it. Per finding: AUROC with a 95% interval from a bootstrap over "
        "patients, AUPRC, prevalence, and sensitivity/specificity/PPV/NPV/F1 at the thresholds chosen on "
        "validation; the mean AUROC with its interval; AUROC by sex, age band and view; calibration; Google's "
        "radiologist-adjudicated labels when google2019_nih-chest-xray-labels.csv is in the data folder.",
    ),
    Command(
        "compare", CompareConfig, "cxr14.judging.compare:run_compare",
        "is model B better than model A? paired AUROC differences with intervals, DeLong and Holm, on the same "
        "patients",
        "Score two or more models (checkpoints, ensembles A.pth,B.pth, exports, or evaluation/run folders whose "
        "predictions are reused when they are of the same images) on the same split and compare each with the "
        "first: per finding and for the mean AUROC, each model's AUROC, the difference B - A with a 95% interval "
        "from one paired bootstrap over patients (the same resampled patients for both models), DeLong's test "
        "(Sun & Xu's fast algorithm) and Holm-adjusted p-values across the findings. Writes comparison.json, "
        "comparison.csv and report.html (a forest plot of the differences).",
    ),
    Command(
        "fit_gate", FitGateConfig, "cxr14.training.gate_fit:run_fit_gate",
        "add the out-of-distribution gate to a checkpoint trained without one (training fits it itself)",
        "Fit the check that flags films unlike the training data: statistics of several of the model's stages "
        "(each channel's spread, and its means on a 2x2 grid) on the checkpoint's own training films (at most "
        "20,000, a seeded sample), each part summarised by a Ledoit-Wolf covariance of its principal components, "
        "and a threshold on the films' mean Mahalanobis distance: the training films' 99th percentile, scaled by "
        "how much farther its validation films lie (at least 10 needed). Stored in the checkpoint, which is "
        "rewritten atomically (or --out). cxr14 train does this itself when it ends.",
    ),
    Command(
        "predict", PredictConfig, "cxr14.using.predict:run_predict",
        "score new films (PNG, JPEG, DICOM) with a checkpoint: one row per film, a probability per finding",
        "Read PNG, JPEG and DICOM films (files, or folders searched recursively), score them with a trained "
        "model and print one CSV row per film (or JSON lines with --json): the probabilities, calibrated with "
        "the temperatures fitted on validation, and the findings at or above the thresholds chosen there. "
        "Each row also says whether the film is unusual - plainly not a chest film (a colour photograph, an odd "
        "shape, a blank image), or unlike the training films to the model's out-of-distribution gate (ood_score "
        "above 1) - and why; an unusual film's findings are not called. Unreadable files are skipped and named. "
        "--cam writes heatmap overlays.",
    ),
    Command(
        "report", ReportConfig, "cxr14.judging.report:rebuild",
        "(re)build report.html from an evaluation or training run folder",
        "Build the self-contained report.html of a folder written by `cxr14 evaluate` or `cxr14 train` "
        "(metrics.json, the predictions CSV, and the training history metrics.csv), e.g. after editing or copying "
        "it. Evaluate and train write it themselves.",
    ),
    Command(
        "serve", ServeConfig, "cxr14.using.serve.runner:serve",
        "a local web page and JSON API for a checkpoint: drop a film, see the findings and the heatmaps",
        "Serve a trained model (best_model.pth) on a small web page and a JSON API (POST /api/predict, GET "
        "/api/model, GET /api/health; OpenAPI docs at /docs), scored exactly as `cxr14 predict`. Listens on "
        "127.0.0.1 (this machine only) unless --host says otherwise; every script and style is served locally. "
        "A research tool, not a diagnostic device. Needs the serve extra: pip install 'cxr14[serve]'.",
    ),
    Command(
        "export", ExportConfig, "cxr14.using.export.run:run_export",
        "write a checkpoint as a timm / Hugging Face folder and an ONNX graph, each checked against it",
        "Turn a best_model.pth into OUT/hf (model.safetensors, config.json and a README.md model card in the "
        "Hugging Face hub's layout: `timm.create_model('local-dir:OUT/hf', pretrained=True)` loads it without "
        "cxr14) and OUT/onnx/model.onnx (uint8 pixels [batch, 1, S, S] in, normalisation and temperature inside, "
        "'probabilities' and 'logits' [batch, K] out, and the gate's 'ood_score' [batch], any batch size). Each file "
        "is then reloaded (timm; ONNX Runtime on the CPU), fed the same phantom films as the checkpoint, and the "
        "export fails if any probability differs by more than 1e-4 (an ood_score by more than 1e-3); the largest "
        "difference is printed. Both outputs also work as "
        "`cxr14 predict --checkpoint`.",
    ),
    Command(
        "download", DownloadConfig, "cxr14.data.nih_download.download:run_download",
        "get NIH's images and metadata into a data folder (resumable, verified), or --check a folder",
        DOWNLOAD_DESCRIPTION, preformatted=True,
    ),
    Command(
        "dicom predict", DicomPredictConfig, "cxr14.using.dicom.offline:run_dicom_predict",
        "score DICOM films and write the results a PACS would get (SR, heatmap SC, GSPS) as .dcm files",
        "Read DICOM files (or folders of them), score each frontal chest radiograph (CR, or DX For Presentation; "
        "ViewPosition PA or AP unless --views all; BodyPartExamined CHEST when given) exactly as `cxr14 predict` "
        "does, and write its results into OUT/<its SOP Instance UID>/: sr.dcm, the findings as a TID 1500 "
        "Comprehensive 3D SR (each finding's code, probability, and Present/Absent at the model's threshold; "
        "Indeterminate with the reason for an unusual film), sc-N.dcm, the top findings' heatmaps over the film as "
        "RGB Secondary Captures, and gsps.dcm (with --outputs ...,gsps), the top finding's hottest region outlined "
        "in a presentation state. Each result belongs to the film's study, in a new series, with UIDs derived from "
        "the film and the model, so a second run writes the same objects again. Other objects (laterals, reports, "
        "presentation states, cxr14's own results, multi-frame images, unreadable files) are skipped with the "
        "reason, named by SOP Instance UID only. Preliminary and unverified: not for diagnosis.",
    ),
    Command(
        "dicom listen", DicomListenConfig, "cxr14.using.dicom.node:run_listen",
        "a DICOM node: a PACS sends it films (C-STORE), it stores the results back (C-STORE or STOW-RS)",
        "Listen as a DICOM storage node (--aet on --host:--port, 127.0.0.1 by default; --allow limits the callers). "
        "Each film received is written durably to the --spool folder before it is acknowledged, scored there as "
        "`cxr14 dicom predict` scores it (the same objects, the same UIDs), and its results are stored back into "
        "the film's study by C-STORE (--send AET@HOST:PORT) or STOW-RS (--stow URL). Delivery is retried with a "
        "growing pause while the PACS is unreachable or out of resources; an object it refuses goes to SPOOL/dead "
        "with the reason. A film stays in the spool until its results are delivered, so a restart (even after a "
        "crash) takes up where the last run stopped, and a resent result is the same object, stored once. "
        "Skipped films are logged by SOP Instance UID only. Ctrl-C or SIGTERM stops it. Needs the dicom extra: "
        "pip install 'cxr14[dicom]'. Research use only: not for diagnosis.",
    ),
    Command(
        "prepare", PrepareConfig, "cxr14.data.pipeline.loaders:run_prepare",
        "decode every image once into a resized uint8 cache that training reads instead of PNGs",
        "Decode and resize every image named in the metadata CSV once, in parallel, into a memory-mapped uint8 "
        "array (DATA_DIR/cache/cache_SIZE by default). Training at SIZE or less then reads pixels from it instead "
        "of decoding PNGs every epoch. Interrupted runs resume; a cache whose files changed is detected and "
        "rebuilt where needed.",
    ),
    Command(
        "phantom", PhantomConfig, "cxr14.data.phantom:run_phantom",
        "write a synthetic NIH-format dataset (or a preview sheet of its findings)",
        "Render synthetic frontal chest radiographs with a visible sign for each of the 14 findings, laid out "
        "exactly like NIH's download: Data_Entry_2017.csv, images/, train_val_list.txt, test_list.txt. "
        "Deterministic from --seed; an existing complete set with the same settings is reused.",
    ),
    Command(
        "demo", DemoConfig, "cxr14.training.demo:run_demo",
        "phantom data + a small ConvNeXt trained from scratch + test AUROC, in minutes on a CPU",
        "Generate (or reuse) a phantom dataset, train convnext_atto on it through the normal training path (GPU "
        "if present, else CPU), score it on the phantom test split with intervals and a report, and score its "
        "heatmaps against the phantom boxes.",
    ),
)  # fmt: skip


#: Groups of sub-commands: name -> (help in `cxr14 --help`, description in `cxr14 NAME --help`).
GROUPS = {
    "dicom": ("DICOM in and out: score DICOM films and make results a PACS files in the study (SR, SC, GSPS)",
              "DICOM films in, DICOM results out: `dicom predict` writes them to a folder, `dicom listen` stores them "
              "back into the PACS; research use only."),
}  # fmt: skip


def command(name: str) -> Command:
    """The table's entry for `name`."""
    return next(c for c in COMMANDS if c.name == name)


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


def build_parser() -> argparse.ArgumentParser:
    """`cxr14` and one subparser per entry of COMMANDS, its options built from its config class."""
    parser = argparse.ArgumentParser(
        prog="cxr14", description="Train and score chest X-ray classifiers on NIH ChestX-ray14."
    )
    parser.add_argument("--version", action="version", version=f"cxr14 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for c in COMMANDS:
        formatter = argparse.RawDescriptionHelpFormatter if c.preformatted else argparse.HelpFormatter
        group, _, leaf = c.name.rpartition(" ")
        if group and group not in groups:
            help_text, description = GROUPS[group]
            g = sub.add_parser(group, help=help_text, description=description)
            groups[group] = g.add_subparsers(dest=f"{group}_command", required=True, metavar="COMMAND")
        p = (groups[group] if group else sub).add_parser(leaf, help=c.help, description=c.description,
                                                          formatter_class=formatter)  # fmt: skip
        add_arguments(p, c.config)
        name_datasets(p, several=c.name not in SINGLE_DATASET)
        p.set_defaults(command=c)
    return parser


#: Commands whose --dataset / --layout is one dataset (a phantom, a folder checked, a download).
SINGLE_DATASET = ("phantom", "download")


def name_datasets(parser: argparse.ArgumentParser, several: bool = True) -> None:
    """--dataset / --layout: the registry's names in the help, and an unknown name refused while parsing."""
    from cxr14.data.datasets.registry import NAMES  # light: names and file patterns, no reader imported

    def dataset_names(text: str) -> str:
        names = [n.strip() for n in text.split(",")]
        unknown = [n for n in names if n not in NAMES]
        if unknown or (len(names) > 1 and not several) or not all(names):
            one = "" if several else "one of "
            raise argparse.ArgumentTypeError(f"{text!r}: choose {one}{', '.join(NAMES)}"
                                             f"{' (several comma-separated)' if several else ''}")  # fmt: skip
        return ",".join(names)

    for action in parser._actions:
        if action.dest in ("dataset", "layout"):
            action.type = dataset_names
            action.help = f"{action.help}: {', '.join(NAMES)}"


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of one command (to set a --preset's defaults on)."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def run(c: Command, args: argparse.Namespace) -> int:
    """Build the command's config and call it; user errors become one paragraph on stderr and exit status 2.

    The paragraph starts with the command's name, so a message shared by several commands (a missing image,
    a bad folder) still says where it came from.
    """
    setup_logging(getattr(args, "verbose", False))
    try:
        c.call(from_args(c.config, args))
    except UserError as exc:
        print(f"cxr14 {c.name}: error: {exc}", file=sys.stderr)
        _report_to_torchrun(str(exc))
        return 2
    except Stopped as stop:
        return stop.status
    except Exception as exc:
        from cxr14.training import distributed  # torch, imported only when there is something to ask

        if not distributed.peer_failed(exc):
            raise
        print(
            f"cxr14 {c.name}: error: another process of this torchrun job failed (its error is above, and torchrun "
            f"names it as the root cause); this process stops too.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"cxr14 {c.name}: interrupted; files written so far are complete and kept.", file=sys.stderr)
        return 130
    return 0


def _report_to_torchrun(message: str) -> None:
    if "TORCHELASTIC_ERROR_FILE" in os.environ:
        from cxr14.training import distributed

        distributed.report_failure(message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_with_preset(parser, argv, subparser(parser, "train"))
    return run(args.command, args)
