"""`cxr14 export`: the trained phantom model as a timm / Hugging Face folder and as ONNX, each giving the
checkpoint's probabilities; the folder loads with timm alone; predict reads both; bad input is refused."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr14.cli import main
from cxr14.config import PredictConfig
from cxr14.errors import UserError
from cxr14.labels import NIH_LABELS
from cxr14.model.loading import load_model
from cxr14.using.export import verify
from cxr14.using.export.card import SOURCE_LINE, USAGE
from cxr14.using.export.onnx_file import TRACE_BATCH
from cxr14.using.predict import run_predict

onnxruntime = pytest.importorskip("onnxruntime")
TOL = 1e-4


def export(*args: str) -> tuple[int, str, str]:
    """`cxr14 export ARGS` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["export", *args])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def exported(phantom_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(checkpoint, export folder, what export printed): hf + onnx + the float32 graph, checked on 3 films."""
    checkpoint = phantom_run[0] / "best_model.pth"
    out = tmp_path_factory.mktemp("export") / "cxr14-atto"
    status, printed, err = export("--checkpoint", str(checkpoint), "--out", str(out), "--onnx_float", "--batch", "3")
    assert status == 0, err
    return checkpoint, out, printed


@pytest.fixture(scope="module")
def films(exported: tuple[Path, Path, str], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four new phantom films (another seed than export's own check) as PNG files at the model's size."""
    folder = tmp_path_factory.mktemp("films")
    paths = []
    for i, film in enumerate(verify.phantom_films(4, 64, seed=7)):
        paths.append(folder / f"film{i}.png")
        Image.fromarray(film[0]).save(paths[-1])
    return paths


def test_export_checks_each_file_and_prints_the_largest_difference(exported: tuple[Path, Path, str]) -> None:
    _, out, printed = exported
    lines = {line.split()[0] + (" float32" if "float32" in line.split()[1] else ""): line
             for line in printed.splitlines() if "largest |probability difference|" in line}  # fmt: skip
    assert set(lines) == {"hf", "onnx", "onnx float32"}
    for line in lines.values():
        largest = float(re.search(r"checkpoint: ([^,\s]+)", line).group(1))
        gate = float(re.search(r"\|ood_score difference\| (\S+) over", line).group(1))  # the model has a gate
        assert largest <= TOL and gate <= 1e-3 and line.endswith(": ok")
    record = json.loads((out / "export.json").read_text())
    assert all(c["passed"] and c["largest_difference"] <= TOL for c in record["checks"])
    assert all(TRACE_BATCH not in c["batches"] for c in record["checks"])  # checked at other batch sizes
    assert sorted(p.name for p in (out / "hf").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert sorted(p.name for p in (out / "onnx").iterdir()) == ["model.onnx", "model_float32.onnx"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # the staging folder is gone


def test_onnx_graph_takes_pixels_of_any_batch_and_matches_the_checkpoint(exported, films) -> None:
    """ONNX Runtime alone, uint8 and float32 pixels, batch 4 (traced at 2) and 1: the checkpoint's probabilities."""
    checkpoint, out, _ = exported
    pixels = np.stack([np.array(Image.open(p))[None] for p in films])
    model = load_model(checkpoint, "cpu", "fp32")
    expected = model.probabilities(model.classifier(torch.from_numpy(pixels)).numpy())
    gate_scores = model.classifier.run(torch.from_numpy(pixels)).ood.numpy()
    for name, dtype in (("model.onnx", np.uint8), ("model_float32.onnx", np.float32)):
        session = onnxruntime.InferenceSession(str(out / "onnx" / name), providers=["CPUExecutionProvider"])
        probs, logits = session.run(["probabilities", "logits"], {"pixels": pixels.astype(dtype)})
        assert probs.shape == (4, 14) and np.abs(probs - expected).max() <= TOL
        assert np.abs(model.probabilities(logits) - expected).max() <= TOL  # raw logits, calibrated by cxr14
        single = session.run(["probabilities"], {"pixels": pixels[2:3].astype(dtype)})[0]
        assert np.abs(single - expected[2:3]).max() <= TOL
        (ood,) = session.run(["ood_score"], {"pixels": pixels.astype(dtype)})  # the gate, inside the graph
        assert ood.shape == (4,) and np.abs(ood - gate_scores).max() <= 1e-3
    meta = onnxruntime.InferenceSession(str(out / "onnx" / "model.onnx")).get_modelmeta().custom_metadata_map
    block = json.loads(meta["cxr14"])
    assert block["labels"] == list(NIH_LABELS) and block["image_size"] == 64 and len(block["thresholds"]) == 14


def test_hf_folder_loads_with_timm_alone(exported, films) -> None:
    """The model card's own snippet, run where cxr14 cannot be imported, prints the checkpoint's probabilities."""
    checkpoint, out, _ = exported
    snippet = USAGE.removeprefix("```python\n").removesuffix("```")
    snippet = snippet.replace(SOURCE_LINE, f"SOURCE = {'local-dir:' + str(out / 'hf')!r}")
    snippet = snippet.replace('FILM = "film.png"', f"FILM = {str(films[0])!r}")
    script = (
        "import sys\nsys.modules['cxr14'] = None  # any `import cxr14` now fails\n"
        f"{snippet}\n"
        "assert model.num_classes == 14 and model.stem[0].in_channels == 1, (model.num_classes, model.stem[0])\n"
        "assert sys.modules['cxr14'] is None\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    printed = {line.split()[0]: float(line.split()[1]) for line in done.stdout.splitlines() if line.strip()}
    assert list(printed) == list(NIH_LABELS)
    model = load_model(checkpoint, "cpu", "fp32")
    pixels = torch.from_numpy(np.array(Image.open(films[0]))[None, None])
    expected = model.probabilities(model.classifier(pixels).numpy())[0]
    assert np.abs(np.array(list(printed.values())) - expected).max() <= TOL + 5e-5  # printed to 4 decimals
    # the gate's statistics travel in config.json: the folder read by cxr14 gives the checkpoint's ood_score
    block = json.loads((out / "hf" / "config.json").read_text())["cxr14"]
    part = block["gate"]["parts"][0]
    assert block["gate"]["threshold"] > 0
    assert len(part["mean"]) == len(part["projection"]) == part["stop"] - part["start"]
    from_folder = load_model(out / "hf", "cpu", "fp32").classifier.run(pixels).ood
    assert abs(float(from_folder[0]) - float(model.classifier.run(pixels).ood[0])) <= 1e-3


def test_model_card_carries_the_metrics(exported, phantom_run) -> None:
    from huggingface_hub import ModelCard

    _, out, _ = exported
    metrics = json.loads((phantom_run[0] / "metrics.json").read_text())
    card = ModelCard.load(out / "hf" / "README.md")
    assert card.data.library_name == "timm" and card.data.pipeline_tag == "image-classification"
    (result,) = card.data.eval_results
    assert result.metric_type == "roc_auc" and result.metric_value == round(metrics["mean_auroc"], 4)
    low, high = metrics["mean_auroc_ci"]
    assert f"95% CI {low:.4f}-{high:.4f}" in result.metric_name
    assert "Research tool, not a diagnostic device" in card.text
    assert "not real radiographs" in card.text  # trained on phantoms, and the card says so
    first = NIH_LABELS[0]
    assert f"| {first} | {metrics['per_class'][first]['auroc']:.4f} |" in card.text
    config = json.loads((out / "hf" / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [1, 64, 64] and config["model_args"]["in_chans"] == 1
    assert config["label_names"] == list(NIH_LABELS) and config["cxr14"]["temperature"] is not None


def test_predict_reads_onnx_and_hf_like_the_checkpoint(exported, films) -> None:
    checkpoint, out, _ = exported

    def scored(path: Path) -> list[dict]:
        return run_predict(PredictConfig(paths=list(films), checkpoint=path, device="cpu", num_workers=0,
                                         progress=False))  # fmt: skip

    with contextlib.redirect_stdout(io.StringIO()):
        rows = {name: scored(path) for name, path in
                (("pth", checkpoint), ("onnx", out / "onnx" / "model.onnx"), ("hf", out / "hf"))}  # fmt: skip
    for name in ("onnx", "hf"):
        for mine, theirs in zip(rows[name], rows["pth"], strict=True):
            assert mine["file"] == theirs["file"] and mine["findings"] == theirs["findings"]
            diff = max(abs(mine["probabilities"][k] - theirs["probabilities"][k]) for k in NIH_LABELS)
            assert diff <= TOL, (name, diff)
    cams, printed = out.parent / "cams", io.StringIO()
    with pytest.raises(UserError, match="--cam needs the PyTorch model"), contextlib.redirect_stdout(printed):
        run_predict(PredictConfig(paths=films[:1], checkpoint=out / "onnx" / "model.onnx", cam=cams, device="cpu",
                                  num_workers=0, progress=False))  # fmt: skip
    assert printed.getvalue() == ""  # refused before scoring, not after the rows


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cxr14 checkpoint of timm's smallest ViT at 32 px (its own size is 160), untrained and uncalibrated."""
    from cxr14.model import checkpoint
    from cxr14.model.create import build, data_config

    model = build("test_vit", 1, len(NIH_LABELS), image_size=32)
    path = tmp_path_factory.mktemp("tiny") / "best_model.pth"
    state = checkpoint.make_state(model, "test_vit", data_config(model, 32), NIH_LABELS, config={})
    checkpoint.atomic_save(state, path)
    return path


def test_fixed_size_architecture_at_another_size_exports_to_timm(tiny_vit: Path, tmp_path: Path) -> None:
    """A ViT at 32 px, not its 160: timm rebuilds it from config.json alone (img_size recorded) and matches."""
    status, printed, err = export("--checkpoint", str(tiny_vit), "--out", str(tmp_path / "x"), "--format", "hf")
    assert status == 0, err
    assert printed.startswith("hf ") and ": ok" in printed
    config = json.loads((tmp_path / "x" / "hf" / "config.json").read_text())
    assert config["model_args"]["img_size"] == [32, 32] and config["pretrained_cfg"]["input_size"] == [1, 32, 32]
    assert config["cxr14"]["thresholds"] is None
    assert "plain sigmoid" in (tmp_path / "x" / "hf" / "README.md").read_text()  # no calibration: it says so


# --- bad input ---------------------------------------------------------------------------------------


def test_not_a_cxr14_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pth")
    status, _, err = export("--checkpoint", str(tmp_path / "other.pth"), "--out", str(tmp_path / "x"))
    assert status == 2 and "is not a cxr14 checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_existing_out_is_kept_without_force_and_replaced_with_it(tiny_vit: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    status, _, err = export("--checkpoint", str(tiny_vit), "--out", str(out), "--format", "hf")
    assert status == 2 and "already holds files" in err and "--force" in err
    assert (out / "mine.txt").read_text() == "keep me"
    status, _, err = export("--checkpoint", str(tiny_vit), "--out", str(out), "--format", "hf", "--force")
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "hf"]
    status, _, err = export("--checkpoint", str(tiny_vit), "--out", str(tiny_vit.parent), "--force")
    assert status == 2 and "holds the checkpoint" in err  # --force never deletes the run being exported
    assert tiny_vit.is_file()


def test_unexportable_operator_is_named(tiny_vit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator the ONNX exporter cannot translate (zeta) ends the export with its name, and nothing is left."""
    from cxr14.using.export import onnx_file

    class WithZeta(onnx_file.PixelsToProbabilities):
        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probs, logits = super().forward(pixels)
            return probs + 0 * torch.special.zeta(probs + 2, probs + 1), logits

    monkeypatch.setattr(onnx_file, "PixelsToProbabilities", WithZeta)
    out = tmp_path / "out"
    status, _, err = export("--checkpoint", str(tiny_vit), "--out", str(out), "--format", "onnx")
    assert status == 2 and "cannot be exported to ONNX" in err and "operator prims.zeta" in err, err
    assert not out.exists() and not list(tmp_path.iterdir())  # the staging folder went too


def test_missing_packages_name_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    status, _, err = export("--checkpoint", str(tmp_path / "none.pth"), "--out", str(tmp_path / "x"))
    assert status == 2 and "onnxscript" in err and "pip install 'cxr14[export]'" in err


def test_bad_format_and_foreign_files_are_refused(exported, tmp_path: Path) -> None:
    _, out, _ = exported
    status, _, err = export("--checkpoint", "x.pth", "--out", str(tmp_path / "x"), "--format", "hf,tflite")
    assert status == 2 and "unknown tflite" in err
    with pytest.raises(UserError, match=r"without config\.json"):
        load_model(tmp_path, "cpu")
    import onnx

    graph = onnx.load(str(out / "onnx" / "model.onnx"))
    del graph.metadata_props[:]
    onnx.save_model(graph, str(tmp_path / "plain.onnx"))
    with pytest.raises(UserError, match="not written by `cxr14 export`"):
        load_model(tmp_path / "plain.onnx", "cpu")
    shutil.copytree(out / "hf", tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    del config["cxr14"]
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="not written by `cxr14 export`"):
        load_model(tmp_path / "hf", "cpu")
