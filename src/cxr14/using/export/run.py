"""`cxr14 export`: checkpoint -> staging folder -> each format written and checked -> the folder put in place.

Everything is written into a hidden folder beside --out and checked there; only an export whose every file
gave the checkpoint's probabilities (within `verify.TOLERANCE`) is renamed to --out. A failed check, an
error or Ctrl-C leaves --out as it was: nothing half-written, and with --force the old folder is replaced
only at the very end.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from cxr14 import __version__
from cxr14.config import ExportConfig
from cxr14.errors import UserError
from cxr14.files import write_text
from cxr14.model import fields
from cxr14.model.onnx_runtime import require
from cxr14.using.export.onnx_file import EXPORT_PACKAGES, FLOAT_NAME

log = logging.getLogger(__name__)
HF_DIR = "hf"
ONNX_FILE = Path("onnx") / "model.onnx"
RECORD = "export.json"


def run_export(cfg: ExportConfig) -> dict[str, Any]:
    """Write and check every format in cfg.formats; returns what export.json records."""
    if "onnx" in cfg.formats:
        require(EXPORT_PACKAGES, "cxr14 export --format onnx")
    check_out(cfg)
    from cxr14.model.ensemble import is_ensemble

    if is_ensemble(cfg.checkpoint):
        raise UserError(
            f"{cfg.checkpoint} is an ensemble; export writes one model. Export each member (cxr14 export "
            f"--checkpoint MEMBER --out DIR) and serve or predict the ensemble from its manifest."
        )
    if cfg.checkpoint.suffix == ".onnx":
        raise UserError(f"{cfg.checkpoint} is an ONNX graph; export starts from a best_model.pth (or an hf folder).")
    from cxr14.model.loading import load_model

    loaded = load_model(cfg.checkpoint, cfg.device, precision="fp32")  # fp32: the comparison is at 1e-4
    staging = cfg.out.parent / f".{cfg.out.name}.export-{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    try:
        record = _write_and_check(cfg, loaded, staging)
        write_text(staging / RECORD, json.dumps(record, indent=2) + "\n")
        _publish(staging, cfg.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"export written to {cfg.out}: " + ", ".join(c["file"] for c in record["checks"]) + f", {RECORD}")
    return record


def _write_and_check(cfg: ExportConfig, loaded: Any, staging: Path) -> dict[str, Any]:
    """Each format into `staging`, each read back and compared; UserError if any probability is off."""
    from cxr14.using.export import verify

    films = verify.phantom_films(cfg.batch, loaded.data_config.image_size)
    expected = verify.reference(loaded, films)
    device = loaded.classifier.device
    model = loaded.classifier.model.cpu()  # both writers work from CPU tensors
    gate = loaded.classifier.gate
    block = fields.describe(loaded.data_config, loaded.calibration, loaded.card)
    checks = []
    if "hf" in cfg.formats:
        from cxr14.using.export.hf import write_hf

        log.info("writing the timm / Hugging Face folder")
        write_hf(model, loaded.data_config, {**block, "gate": gate.to_json() if gate else None}, staging / HF_DIR)
        checks.append(verify.check_hf(staging / HF_DIR, staging, films, expected, device))
    if "onnx" in cfg.formats:
        from cxr14.using.export.onnx_file import PixelsToProbabilities, write_float_variant, write_onnx

        log.info("writing the ONNX graph (opset %d)", cfg.opset)
        path = staging / ONNX_FILE
        path.parent.mkdir()
        temperature = loaded.calibration.temperature if loaded.calibration is not None else None
        write_onnx(PixelsToProbabilities(model, loaded.data_config, temperature, gate), block, path, cfg.opset)
        checks.append(verify.check_onnx(path, staging, films, expected))
        if cfg.onnx_float:
            write_float_variant(path, path.with_name(FLOAT_NAME))
            checks.append(verify.check_onnx(path.with_name(FLOAT_NAME), staging, films, expected))
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = ", ".join(f"{c.name} {c.largest_difference:.2e}" for c in failed)
        raise UserError(
            f"The export does not give the checkpoint's answers: {worst} (allowed: {verify.TOLERANCE:g}). Nothing "
            f"was written to {cfg.out}. This is a bug in the exporter or the runtime for {loaded.card['model']}; "
            f"the line per format above says which file and how it was read."
        )
    return _record(cfg, checks)


def _record(cfg: ExportConfig, checks: list[Any]) -> dict[str, Any]:
    """export.json: what was checked, against what, with which versions."""
    import timm
    import torch

    versions = {"cxr14": __version__, "torch": torch.__version__, "timm": timm.__version__}
    if "onnx" in cfg.formats:
        import onnx
        import onnxruntime

        versions.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    return {
        "checkpoint": str(cfg.checkpoint),
        "formats": list(cfg.formats),
        "opset": cfg.opset if "onnx" in cfg.formats else None,
        "checks": [c.to_json() for c in checks],
        "versions": versions,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def check_out(cfg: ExportConfig) -> None:
    """Refuse an --out that is a file, a non-empty folder (without --force), or one holding the checkpoint."""
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file; pass a folder (new or empty).")
    if cfg.checkpoint.resolve().is_relative_to(out.resolve()):
        raise UserError(
            f"--out {out} holds the checkpoint {cfg.checkpoint} itself; replacing it would delete the model being "
            f"exported. Pass another folder, e.g. {out / 'export'}."
        )
    if out.is_dir() and any(out.iterdir()) and not cfg.force:
        raise UserError(
            f"--out {out} already holds files. Pass another folder, or --force to replace it (the old folder is "
            f"removed only once the new export has passed its checks)."
        )


def _publish(staging: Path, out: Path) -> None:
    """Rename the checked export to `out`; an existing `out` (empty, or replaced with --force) goes last."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = out.parent / f".{out.name}.replaced-{secrets.token_hex(4)}"
    os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old)
