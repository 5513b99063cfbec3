"""README.md of an exported model: the Hugging Face hub's metadata header, then what a stranger needs to know.

The header is written by huggingface_hub's own `ModelCardData` (model-index format: the test mean AUROC
and its patient-bootstrap interval from metrics.json beside the checkpoint, when there is one), so the hub
shows the figures in its evaluation widget. The body says what the model is, how to run it with timm alone
(a snippet the tests execute), where its data and split came from, its figures, its intended use and its
limits, and that it is a research tool, not a diagnostic device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOT_A_DEVICE = (
    "**Research tool, not a diagnostic device.** It has not been cleared or approved by any regulator, it has not "
    "been validated prospectively, and it must not be used to diagnose, triage or treat anyone."
)
#: The datasets a model can be trained on: (hub id, name, one line on what it is).
DATASETS = {
    "nih": ("nih-chest-xray14", "NIH ChestX-ray14", None),
    "chexpert": ("chexpert", "CheXpert", "[CheXpert](https://stanfordmlgroup.github.io/competitions/chexpert/) (Irvin "
                 "et al., AAAI 2019): Stanford Hospital's chest films, 14 observations labelled from the reports"),
    "mimic": ("mimic-cxr-jpg", "MIMIC-CXR-JPG", "[MIMIC-CXR-JPG](https://physionet.org/content/mimic-cxr-jpg/) "
              "(Johnson et al., 2019): Beth Israel Deaconess Medical Center's chest films, labels per study"),
    "padchest": ("padchest", "PadChest", "[PadChest](https://bimcv.cipf.es/bimcv-projects/padchest/) (Bustos et al., "
                 "2020): Hospital San Juan's chest films, findings from the Spanish reports"),
    "vindr": ("vindr-cxr", "VinDr-CXR", "[VinDr-CXR](https://physionet.org/content/vindr-cxr/) (Nguyen et al., "
              "2022): Vietnamese hospitals' chest films, each read by radiologists"),
    "csv": ("custom", "a labelled set of its own", "the trainer's own labelled films (a `cxr14 --dataset csv` table)"),
    "folder": ("custom", "class folders of its own", "the trainer's own films in class folders (`--dataset folder`)"),
}  # fmt: skip


def trained_on(card: dict[str, Any]) -> list[str]:
    """The datasets a model was trained on: one, several (--dataset A,B), or a mix file's (from its test record)."""
    dataset = str((card.get("config") or {}).get("dataset", "nih"))
    if dataset == "mix":
        return [v["dataset"] for v in ((card.get("test") or {}).get("sources") or {}).values()] or ["csv"]
    return dataset.split(",")


def _entry(names: list[str]) -> tuple[str, str, str | None]:
    """(hub id, name, description) of one dataset, or of a mix of several."""
    if len(names) == 1:
        return DATASETS.get(names[0], DATASETS["csv"])
    parts = [DATASETS.get(n, DATASETS["csv"]) for n in names]
    return ("custom", " + ".join(p[1] for p in parts), "A mix of several datasets, trained as one: " + "; ".join(
        p[2] or p[1] for p in parts))
NIH_CITATION = """@inproceedings{wang2017chestxray8,
  title     = {ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised Classification
               and Localization of Common Thorax Diseases},
  author    = {Wang, Xiaosong and Peng, Yifan and Lu, Le and Lu, Zhiyong and Bagheri, Mohammadhadi and
               Summers, Ronald M.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2017}
}"""
#: The line of the usage snippet that names the model; tests swap it for a local folder.
SOURCE_LINE = 'SOURCE = "hf-hub:USER/NAME"  # or "local-dir:/path/to/this/folder"'
USAGE = f"""```python
import json
from pathlib import Path

import numpy as np
import timm
import torch
from huggingface_hub import hf_hub_download
from PIL import Image

{SOURCE_LINE}
FILM = "film.png"  # a frontal chest film, 8-bit grayscale (PNG or JPEG)

model = timm.create_model(SOURCE, pretrained=True).eval()  # one output per label; timm reads config.json
cfg = model.pretrained_cfg
if SOURCE.startswith("local-dir:"):
    config_file = Path(SOURCE[len("local-dir:"):]) / "config.json"
else:
    config_file = hf_hub_download(SOURCE[len("hf-hub:"):], "config.json")
extra = json.loads(Path(config_file).read_text())["cxr14"]  # labels, thresholds, temperatures

channels, size = cfg["input_size"][0], cfg["input_size"][-1]
gray = Image.open(FILM).convert("L").resize((size, size), Image.Resampling.BILINEAR)
x = torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0)[None, None]  # [1, 1, S, S]
x = (x - torch.tensor(cfg["mean"]).view(1, -1, 1, 1)) / torch.tensor(cfg["std"]).view(1, -1, 1, 1)
with torch.no_grad():
    logits = model(x.expand(-1, channels, -1, -1))[0]
temperature = torch.tensor(extra["temperature"]) if extra["temperature"] else torch.ones(len(logits))
probabilities = torch.sigmoid(logits / temperature)
thresholds = extra["thresholds"] or [None] * len(logits)
for label, p, t in zip(extra["labels"], probabilities.tolist(), thresholds):
    print(f"{{label:20s}} {{p:.4f}}{{'  <- called' if t is not None and p >= t else ''}}")
```"""


def readme(block: dict[str, Any], license_id: str) -> str:
    """The whole README.md for a folder whose config.json carries `block` (model.fields.describe)."""
    card = block["card"]
    name = f"cxr14-{card['model']}-{block['image_size']}px"
    sections = [
        f"---\n{_header(card, name, license_id)}\n---",
        f"# {card['model']} for {len(block['labels'])} chest X-ray findings",
        _what(block, card),
        NOT_A_DEVICE,
        "## Use it with timm alone\n\nNo cxr14 needed: timm builds the model from `config.json` and loads "
        "`model.safetensors`; cxr14's thresholds and temperatures sit in the same file under the key `cxr14`. "
        f"Preprocessing: {block['preprocessing']} (mean {_nums(block['mean'])}, std {_nums(block['std'])}).\n\n"
        f"{USAGE}\n\nWith cxr14 installed, `cxr14 predict --checkpoint PATH/TO/THIS/FOLDER films/` gives the same "
        "numbers for PNG, JPEG and DICOM films (16-bit films and DICOM windowing handled), and `cxr14 export "
        "--format onnx` writes an ONNX graph of the same model for ONNX Runtime or Triton.",
        "## Outputs\n\n" + _outputs(block),
        "## Data\n\n" + _data(card),
        "## Evaluation\n\n" + _evaluation(card),
        "## Training\n\n" + _training(block, card),
        "## Intended use\n\nResearch on chest X-ray classification: reproducing and comparing ChestX-ray14 "
        "results, studying calibration, subgroups and heatmaps, and teaching. " + NOT_A_DEVICE.split("**")[1],
        "## Limitations\n\n" + _limitations(),
        f"## Citation\n\nThe data:\n\n```bibtex\n{NIH_CITATION}\n```",
    ]
    return "\n\n".join(sections) + "\n"


def _header(card: dict[str, Any], name: str, license_id: str) -> str:
    """YAML metadata for the hub: library, task, tags, license, data, and the test AUROC in model-index form."""
    from huggingface_hub import EvalResult, ModelCardData

    results = []
    entry = _entry(trained_on(card))
    test = card.get("test") or {}
    if test.get("mean_auroc") is not None:
        ci = test.get("mean_auroc_ci") or [None, None]
        interval = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f}, patient bootstrap)" if None not in ci else ""
        results.append(
            EvalResult(
                task_type="image-classification",
                task_name=f"Multi-label classification of {len(card['labels'])} chest X-ray findings",
                dataset_type=entry[0],
                dataset_name=entry[1],
                dataset_split=str(test.get("split") or "test"),
                metric_type="roc_auc",
                metric_value=round(float(test["mean_auroc"]), 4),
                metric_name=f"Mean AUROC over the findings{interval}",
            )
        )
    data = ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=license_id,
        tags=["image-classification", "timm", "cxr14", "chest-x-ray", "medical-imaging", "multi-label"],
        datasets=sorted({_entry([n])[0] for n in trained_on(card)}),
        metrics=["roc_auc"],
        model_name=name,
        eval_results=results or None,
    )
    return data.to_yaml()


def _nums(values: list[float]) -> str:
    return ", ".join(f"{v:.4f}" for v in values)


def _what(block: dict[str, Any], card: dict[str, Any]) -> str:
    size, chans = block["image_size"], block["in_chans"]
    calibrated = (
        "Probabilities are `sigmoid(logit / temperature)` with one temperature per finding fitted on validation, "
        "and a finding is called when its probability reaches the threshold chosen on validation (Youden's J)."
        if block.get("thresholds") is not None
        else "This checkpoint carries no thresholds or temperatures: probabilities are the plain sigmoid."
    )
    return (
        f"A timm `{card['model']}` that reads one {size}x{size} px frontal chest film ({chans} input channel"
        f"{'s' if chans != 1 else ''}) and gives {len(block['labels'])} independent probabilities, one per finding "
        f"(multi-label: a film can show several, or none). Trained with cxr14, exported by cxr14 "
        f"{block['version']}. {calibrated}"
    )


def _outputs(block: dict[str, Any]) -> str:
    thresholds = block.get("thresholds") or [None] * len(block["labels"])
    temps = block.get("temperature") or [None] * len(block["labels"])
    rows = ["| output | finding | threshold (chosen on validation) | temperature |", "|---|---|---|---|"]
    for i, (label, th, t) in enumerate(zip(block["labels"], thresholds, temps, strict=True)):
        rows.append(f"| {i} | {label} | {'none' if th is None else f'{th:.4f}'} | {'-' if t is None else f'{t:.3f}'} |")
    return "\n".join(rows) + "\n\nA finding without a threshold had one class only in validation: it is never called."


def _data(card: dict[str, Any]) -> str:
    config = card.get("config") or {}
    data_dir = Path(str(config.get("data_dir", "")))
    names = trained_on(card)
    if names == ["csv"] and config.get("csv"):
        data_dir = Path(str(config["csv"])).parent
    if (config.get("data_dir") or config.get("csv")) and (data_dir / "phantom.json").is_file():
        return (
            "cxr14's synthetic phantom films (`cxr14 phantom`), **not real radiographs**: this model exists to try "
            "the pipeline end to end and says nothing about real chest films."
        )
    lists = ((card.get("test") or {}).get("data") or {}).get("lists")
    if names != ["nih"]:
        return f"{_entry(names)[2]}. Split: {lists or 'not recorded'}."
    split = {
        "official": "NIH's official patient-wise split (train_val_list.txt / test_list.txt); validation patients "
        "were drawn from train_val, so no patient appears in two splits",
        None: "not recorded (no metrics.json with a data record beside the checkpoint)",
    }.get(lists, f"{lists}: not NIH's official lists, so the figures are not comparable with published ones")
    return (
        "[NIH ChestX-ray14](https://nihcc.app.box.com/v/ChestXray-NIHCC) (Wang et al., CVPR 2017): 112,120 frontal "
        "films of 30,805 patients from the NIH Clinical Center, 14 findings text-mined from the radiology reports "
        "(so the labels themselves are noisy). Split: " + split + "."
    )


def _evaluation(card: dict[str, Any]) -> str:
    test = card.get("test") or {}
    if test.get("mean_auroc") is None:
        return "No test figures were found beside the checkpoint (metrics.json); `cxr14 evaluate` produces them."
    ci = test.get("mean_auroc_ci") or [None, None]
    interval = f" (95% CI {ci[0]:.4f} to {ci[1]:.4f}, bootstrap over patients)" if None not in ci else ""
    text = (
        f"On the {test.get('split', 'test')} split ({test.get('n_images', '?')} films of {test.get('n_patients', '?')} "
        f"patients): mean AUROC **{test['mean_auroc']:.4f}**{interval}, over the findings with both classes present."
    )
    auroc = test.get("auroc") or {}
    if auroc:
        rows = ["| finding | AUROC |", "|---|---|"]
        rows += [f"| {k} | {'undefined' if auroc.get(k) is None else f'{auroc[k]:.4f}'} |" for k in card["labels"]]
        text += "\n\n" + "\n".join(rows)
    return text


def _training(block: dict[str, Any], card: dict[str, Any]) -> str:
    start = "ImageNet-pretrained timm weights" if card.get("pretrained") else "random initialisation"
    val = card.get("validation_mean_auroc")
    rows = [
        f"- architecture: timm `{card['model']}`, {block['image_size']} px, {block['in_chans']} channel(s)",
        f"- started from: {start}; loss: {card.get('loss') or '?'}; best epoch: {card.get('epoch', '?')} "
        f"({card.get('weights', 'model')} weights)",
        f"- validation mean AUROC of the kept epoch: {'?' if val is None else f'{val:.4f}'}",
        f"- trained: {card.get('trained', '?')}; the full training configuration is in config.json (`cxr14.card`)",
    ]
    return "\n".join(rows)


def _limitations() -> str:
    return "\n".join(
        [
            "- The labels were mined from report text by NLP, not read from the films; some are wrong, and the "
            "model learnt them as they are.",
            "- One hospital (NIH Clinical Center), one era of equipment and patients: performance elsewhere is "
            "unknown until measured there.",
            "- Shortcuts: chest drains, lines and film markers correlate with findings (e.g. drains with "
            "pneumothorax); a high AUROC can partly reflect them.",
            "- Frontal (PA or AP) films like NIH's, mostly of adults; lateral films, other modalities and patient "
            "groups unlike NIH's are out of scope.",
            "- Probabilities are calibrated on the validation split of the same data; they drift with prevalence.",
        ]
    )
