"""Fine-tuning: `cxr14 train --init MODEL` starts from a trained model instead of ImageNet or nothing.

The backbone comes over whole; the head keeps its row (weights and bias) for every label of the new data that the
old model knew (by name, or as the same finding in another label set's spelling: `labels.match`), and the other
rows start fresh, as a new head's would. The model is read through the one loader (`model.loading.load_model`), so
a best_model.pth and an hf folder from `cxr14 export` both work; it must be the same architecture at the same image
size (its position embeddings and feature map sizes are fixed by them). The log and config.json say which rows
were kept and which are new. A resumed run takes its weights from last.pth and leaves --init alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from cxr14.errors import UserError
from cxr14.labels import match

log = logging.getLogger(__name__)


def initialise(model: torch.nn.Module, source: Path, name: str, image_size: int, labels: tuple[str, ...]
               ) -> dict[str, Any]:  # fmt: skip
    """Load `source`'s backbone and matching head rows into `model` (built for `labels`); return what was done."""
    from cxr14.model.inference import Classifier
    from cxr14.model.loading import load_model

    loaded = load_model(source, "cpu", "fp32")
    if loaded.members or not isinstance(loaded.classifier, Classifier):
        raise UserError(f"--init {source}: fine-tuning needs one PyTorch model (a best_model.pth or an hf folder "
                        f"from cxr14 export), not an ensemble or an ONNX graph.")  # fmt: skip
    if loaded.card["model"] != name or loaded.data_config.image_size != image_size:
        raise UserError(
            f"--init {source} is {loaded.card['model']} at {loaded.data_config.image_size} px, and this run trains "
            f"{name} at {image_size} px: fine-tuning continues the same architecture at the same size. Pass "
            f"--model {loaded.card['model']} --image_size {loaded.data_config.image_size}, or another --init."
        )
    old = loaded.classifier.model.state_dict()
    head = {id(p) for p in model.get_classifier().parameters()}
    head_keys = [k for k, p in model.named_parameters() if id(p) in head]
    own = model.state_dict()
    backbone = {k: v for k, v in old.items() if k not in head_keys}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if sorted(missing) != sorted(head_keys) or unexpected:
        raise UserError(f"--init {source}: its weights do not fit {name} ({len(unexpected)} unexpected, "
                        f"{len(set(missing) - set(head_keys))} missing outside the head).")  # fmt: skip
    pairs = match(loaded.labels, labels)  # (new label, [old output], "exact")
    kept = {new: loaded.labels[cols[0]] for new, cols, _ in pairs}
    with torch.no_grad():
        for key in head_keys:
            rows = own[key].clone()
            for new, cols, _ in pairs:
                rows[labels.index(new)] = old[key][cols[0]]
            model.state_dict()[key].copy_(rows)
    fresh = [label for label in labels if label not in kept]
    log.info("fine-tuning from %s: backbone loaded; head rows kept for %s; new for %s", source,
             ", ".join(f"{n} (was {o})" if n != o else n for n, o in kept.items()) or "none",
             ", ".join(fresh) or "none")  # fmt: skip
    return {"from": str(source), "kept": kept, "new": fresh}
