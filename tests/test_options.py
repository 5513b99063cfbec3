"""Every option is checked before any work starts; the speed and schedule options run end to end."""

from __future__ import annotations

import csv
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import torch

from cxr14.cli import COMMANDS, Command, main
from cxr14.config.options import PATH_KINDS, RANGE_KEYS
from tests.conftest import TINY_TRAIN, make_nih_folder


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--batch_size", "0", "--batch_size 0 is out of range: it must be >= 1"),
        ("--image_size", "0", "--image_size 0 is out of range: it must be >= 16"),
        ("--val_fraction", "1.5", "--val_fraction 1.5 is out of range: it must be > 0 and < 1"),
        ("--learning_rate", "-1", "--learning_rate -1.0 is out of range"),
        ("--num_epochs", "0", "--num_epochs 0 is out of range"),
        ("--accum_steps", "0", "--accum_steps 0 is out of range"),
        ("--ema", "1.5", "--ema 1.5 is out of range: it must be > 0 and < 1"),
        ("--lr_factor", "2", "--lr_factor 2.0 is out of range"),
        ("--num_workers", "-1", "--num_workers -1 is out of range"),
    ],
)
def test_out_of_range_options_are_named_before_data_is_read(
    option: str, value: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The data folder does not exist: a message about the option proves the option was checked first.
    code = main(["train", "--data_dir", str(tmp_path / "absent"), option, value])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err and "does not exist" not in err


def test_other_bad_combinations(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert main(["train", "--data_dir", str(tmp_path), "--output_dir", str(afile)]) == 2
    assert "is an existing file, not a folder" in capsys.readouterr().err
    assert main(["train", "--sched", "cosine", "--warmup_epochs", "3", "--num_epochs", "3"]) == 2
    assert "leaves no epoch for the cosine schedule" in capsys.readouterr().err
    assert main(["train", "--resume", "auto"]) == 2
    assert "pass --output_dir too" in capsys.readouterr().err
    assert main(["train", "--device", "tpu:0", "--data_dir", str(tmp_path)]) == 2
    assert "--device 'tpu:0' is not a device" in capsys.readouterr().err


@pytest.mark.slow
def test_ema_cosine_accumulation_channels_last_and_tensorboard(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_nih_folder(tmp_path / "data", n_patients=16, per_patient=3, size=40)
    out = tmp_path / "run"
    args = ["train", "--data_dir", str(data), "--output_dir", str(out), *TINY_TRAIN, "--num_epochs", "3",
            "--on_bad_image", "skip", "--ema", "0.5", "--sched", "cosine", "--warmup_epochs", "1",
            "--learning_rate", "1e-3", "--min_lr", "1e-5", "--accum_steps", "2", "--channels_last",
            "--tensorboard"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "global batch 16 = 8 per process x 1 process(es) x 2 accumulation step(s)" in err
    assert "cosine schedule, EMA, channels_last" in err
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert all(0 <= float(r["val_ema_mean_auroc"]) <= 1 for r in rows)  # the EMA is validated every epoch
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] > 1e-5 and lrs[2] < lrs[1] <= 1e-3  # warmed up, then decaying along the cosine
    best = torch.load(out / "best_model.pth", weights_only=True)
    assert best["weights"] in ("model", "ema") and f"new best: {best['weights']} weights" in err
    last = torch.load(out / "last.pth", weights_only=True)
    assert last["ema"] is not None and last["updates"] > 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


# --- every option of every command, from the config classes --------------------------------------------------

NUMERIC = ("int", "float", "int | None", "float | None")


def _required(command: Command, tmp: Path) -> list[str]:
    """The smallest argument list the command's parser accepts: each required option with a harmless value."""
    args: list[str] = []
    for f in fields(command.config):
        if f.default is not MISSING:
            continue
        value = {"checkpoint": str(tmp / "absent.pth"), "out": str(tmp / "new_out")}.get(f.name, str(tmp))
        args += [value] if f.metadata.get("positional") else [f"--{f.name}", value]
    return args


def _bad_values(meta, kind: str, tmp: Path) -> list[str]:
    """Values the option must refuse: each bound crossed, or a path of the wrong kind."""
    if kind in NUMERIC:
        cast = float if "float" in kind else int
        step = 1 if cast is int else 0.5
        out = [cast(meta["min"] - step)] if "min" in meta else []
        out += [cast(meta["gt"])] if "gt" in meta else []
        out += [cast(meta["max"] + step)] if "max" in meta else []
        out += [cast(meta["lt"])] if "lt" in meta else []
        return [str(v) for v in out]
    a_file, a_folder = tmp / "a_file", tmp / "a_folder"
    return {
        "in_dir": [str(a_file)],
        "out_dir": [str(a_file), str(a_file / "below")],
        "in_file": [str(a_folder)],
        "out_file": [str(a_folder), str(a_file / "below.csv")],
    }[meta["path"]]


def _cases() -> list[tuple[str, str, str]]:
    tmp = Path("TMP")  # replaced by the test's own folder
    cases = []
    for command in COMMANDS:
        for f in fields(command.config):
            read_by_loader = f.metadata.get("path") in ("in_model", "in_films")  # checked by what reads them
            if f.type in NUMERIC or ("Path" in str(f.type) and not read_by_loader):
                cases += [(command.name, f.name, v) for v in _bad_values(f.metadata, str(f.type), tmp)]
    return cases


def test_every_option_declares_its_range_or_path_kind() -> None:
    """A new numeric option without a range, or a path option without a kind, fails here, not in a user's hands."""
    for command in COMMANDS:
        for f in fields(command.config):
            if f.type in NUMERIC:
                assert any(k in f.metadata for k in RANGE_KEYS), f"cxr14 {command.name} --{f.name} has no range"
            if "Path" in str(f.type):
                assert f.metadata.get("path") in PATH_KINDS, f"cxr14 {command.name} --{f.name} has no path kind"
    assert {c.name for c in COMMANDS} == {"train", "evaluate", "compare", "fit_gate", "predict", "report", "serve",
                                          "export", "download", "prepare", "phantom", "demo", "dicom predict",
                                          "dicom listen"}  # fmt: skip


@pytest.mark.parametrize(("command", "option", "value"), _cases())
def test_every_bad_option_is_refused_by_name_before_work(
    command: str, option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anything a command wrote by mistake would land here, not in the checkout
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    value = value.replace("TMP", str(tmp_path))
    c = next(c for c in COMMANDS if c.name == command)
    positional = next(f for f in fields(c.config) if f.name == option).metadata.get("positional")
    args = _required(c, tmp_path)
    if positional:
        args = [value if a == str(tmp_path) else a for a in args]
    else:
        args += [f"--{option}", value]
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main([*command.split(), *args])  # "dicom predict": a group and its sub-command
    err = capsys.readouterr().err
    named = option if positional else f"--{option}"
    assert code == 2, err
    assert err.startswith(f"cxr14 {command}: error: ") and named in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # refused before anything was written


def test_a_preset_fills_the_defaults_and_given_options_win() -> None:
    """--preset replaces the plain defaults; an option on the command line wins, even at the plain default's value."""
    from cxr14.cli import build_parser, subparser
    from cxr14.config import PRESETS, TrainConfig, from_args, parse_with_preset

    parser = build_parser()
    argv = ["train", "--preset", "small_real", "--image_size", "384", "--seed", "3"]
    cfg = from_args(TrainConfig, parse_with_preset(parser, argv, subparser(parser, "train")))
    preset = PRESETS["small_real"]
    assert cfg.image_size == 384 and cfg.seed == 3 and cfg.preset == "small_real"  # given: kept (384 is the default)
    keys = ("model", "num_epochs", "ema", "aug_strength")
    assert [getattr(cfg, k) for k in keys] == [preset[k] for k in keys]
    plain = from_args(TrainConfig, parse_with_preset(parser, ["train"], subparser(parser, "train")))
    assert plain.model == "convnext_base" and plain.image_size == 384 and plain.preset is None
    assert TrainConfig.from_preset("small_real", seed=3).model == preset["model"]


def test_evaluate_needs_a_model_or_a_predictions_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--data_dir", str(tmp_path)]) == 2
    assert "(--checkpoint) or a file of predictions (--predictions): give one of them" in capsys.readouterr().err
    (tmp_path / "p.csv").write_text("image,Effusion\n")
    assert main(["evaluate", "--predictions", str(tmp_path / "p.csv"), "--checkpoint", "m.pth"]) == 2
    assert "give only one of them" in capsys.readouterr().err
    assert main(["evaluate", "--predictions", str(tmp_path / "p.csv"), "--bbox"]) == 2
    assert "a predictions file has none" in capsys.readouterr().err
