"""The `cxr14` command: parse -> config -> call. No logic lives here."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from tqdm import tqdm

from cxr14 import __version__
from cxr14.config import TrainConfig, add_arguments
from cxr14.errors import UserError

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

    train(TrainConfig.from_args(args))


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier on NIH ChestX-ray14 (same options as `python main.py`)",
        description="Train a timm model (ConvNeXt by default) on the official patient-wise split, select the "
        "best epoch by validation mean AUROC and score it on the test split.",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr14", description="Train, evaluate and explain chest X-ray classifiers on NIH ChestX-ray14."
    )
    parser.add_argument("--version", action="version", version=f"cxr14 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train(sub)
    return parser


def run(func: Command, args: argparse.Namespace) -> int:
    """Call a command; user errors become one paragraph on stderr and exit status 2."""
    setup_logging(getattr(args, "verbose", False))
    try:
        func(args)
    except UserError as exc:
        print(f"cxr14: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cxr14: interrupted; checkpoints written so far are complete and kept.", file=sys.stderr)
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)
