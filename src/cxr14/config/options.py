"""How a command's options are declared once and checked before any work: fields carrying their help, range
and path kind; argparse built from them; every range and every path checked in one place.

Each field's help text, accepted range (`min`, `max`, `gt`, `lt`) and, for paths, what the path must be
(`path=`: one of PATH_KINDS) live beside it. `add_arguments` builds the argparse options from the fields and
`Options.__post_init__` checks every range and path, so the CLI, `main.py`, config.json and a config built in
Python can never disagree about a name, a default or what is allowed, and a bad value is reported by name
before any data is read or any file written.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import MISSING, field, fields
from pathlib import Path
from typing import Any, TypeVar

from cxr14.errors import UserError

#: Metadata keys that go to argparse; the range keys (min, max, gt, lt) are checked by `check_ranges`.
_ARGPARSE_KEYS = ("choices", "metavar", "nargs", "const")
RANGE_KEYS = ("min", "max", "gt", "lt")
#: What a path option names: a file or folder that is read (in_*), one that is written (out_*), a model in any
#: of the forms `model.loading` reads (a checkpoint file, a .onnx file or an hf folder), or films/folders.
PATH_KINDS = ("in_file", "in_dir", "in_model", "in_films", "out_file", "out_dir")
C = TypeVar("C")


def opt(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field carrying its argparse help, choices, accepted range and path kind as metadata."""
    if "path" in extra and extra["path"] not in PATH_KINDS:
        raise ValueError(f"path kind {extra['path']!r} is not one of {PATH_KINDS}")
    return field(default=default, metadata={"help": help, **extra})


class Options:
    """Base of every command's config dataclass: ranges and paths are checked when one is built."""

    def __post_init__(self) -> None:
        check_ranges(self)
        check_paths(self)


def from_args(cls: type[C], args: argparse.Namespace) -> C:
    """A config dataclass from parsed arguments (its __post_init__ checks the ranges and paths)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def range_text(meta: Any) -> str:
    """">= 1 and <= 14" for a field's range metadata ("" when it has none)."""
    parts = [f">= {meta['min']}" if "min" in meta else "", f"> {meta['gt']}" if "gt" in meta else ""]
    parts += [f"<= {meta['max']}" if "max" in meta else "", f"< {meta['lt']}" if "lt" in meta else ""]
    return " and ".join(p for p in parts if p)


def check_ranges(obj: Any) -> None:
    """Raise a UserError naming the option, the value and the accepted range for the first value out of range."""
    for f in fields(obj):
        meta, value = f.metadata, getattr(obj, f.name)
        if value is None or not any(k in meta for k in RANGE_KEYS):
            continue
        bad = isinstance(value, float) and not math.isfinite(value)
        bad = bad or ("min" in meta and value < meta["min"]) or ("max" in meta and value > meta["max"])
        bad = bad or ("gt" in meta and value <= meta["gt"]) or ("lt" in meta and value >= meta["lt"])
        if bad:
            raise UserError(
                f"--{f.name} {value} is out of range: it must be {range_text(meta)} ({meta['help'].split(' (')[0]})."
            )


def check_paths(obj: Any) -> None:
    """Refuse, by option name, a path that cannot be what its option needs, before any work starts.

    A folder to read that is a file; a file to read that is a folder; a folder to write that is a file; a file
    to write that is a folder; or an output whose nearest existing parent is a file or not writable. (A path to
    read that does not exist is left to the command, which says what it expected to find there.)
    """
    for f in fields(obj):
        kind, value = f.metadata.get("path"), getattr(obj, f.name)
        if value is None or kind in (None, "in_model", "in_films"):
            continue
        option, path = f"--{f.name}", Path(value)
        if kind == "in_dir" and path.exists() and not path.is_dir():
            raise UserError(f"{option} {path} is a file, not a folder; pass the folder itself.")
        if kind == "in_file" and path.is_dir():
            raise UserError(f"{option} {path} is a folder, not a file; pass the file itself.")
        if kind in ("out_dir", "out_file"):
            check_writable(option, path, folder=kind == "out_dir")


def check_writable(option: str, path: Path, folder: bool) -> None:
    """UserError unless `path` can be made (or replaced) as a folder (`folder`) or a file by this process."""
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is an existing file, not a folder; choose another path.")
    if not folder and path.is_dir():
        raise UserError(f"{option} {path} is an existing folder, not a file; pass a file name (e.g. {path / 'out'}).")
    parent = path if path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is a file, so nothing can be written under it; choose another "
                        "path.")  # fmt: skip
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: this user cannot write in {parent}; choose a folder you can write to.")


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--name` option per dataclass field (or a positional one), typed and documented from the field.

    A field without a default is a required option; a field with `group=` goes into that argument group.
    """
    hints = {"int": int, "float": float, "str": str, "Path": Path, "Path | None": Path, "float | None": float}
    hints.update({"str | None": str, "list[Path]": Path, "int | None": int})
    groups: dict[str, Any] = {}
    own = vars(cls).get("__annotations__", {})  # the command's own options first, then the shared ones it inherits
    for f in sorted(fields(cls), key=lambda f: f.name not in own):
        group = f.metadata.get("group")
        target = groups.setdefault(group, parser.add_argument_group(group)) if group else parser
        default = f.default if f.default is not MISSING else None
        kwargs: dict[str, Any] = {"default": default, "help": f.metadata.get("help", "")}
        if f.metadata.get("positional"):
            target.add_argument(f.name, type=hints[str(f.type)], nargs=f.metadata.get("nargs"), help=kwargs["help"])
            continue
        if f.default is MISSING:
            kwargs["required"] = True
        if f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        else:
            kwargs["type"] = hints[str(f.type)]
            kwargs.update({k: f.metadata[k] for k in _ARGPARSE_KEYS if k in f.metadata})
        if default is not None and f.type != "bool":
            kwargs["help"] += " (default: %(default)s)"
        rng = range_text(f.metadata)
        if rng:
            kwargs["help"] += f"; {rng}"
        target.add_argument(f"--{f.name}", **kwargs)
