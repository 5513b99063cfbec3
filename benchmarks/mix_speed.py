"""Does mixing datasets cost anything? Metadata of three datasets read as one against the three read alone, and
training throughput from the caches with three sources against one source, measured side by side in one run.

Phantoms in NIH's, CheXpert's and a csv layout (--patients each), each `prepare`d at --size; then
  (a) load_splits for each dataset alone, and for the three mixed (best of --repeats, in this process);
  (b) training steps (convnext_atto at --size, batch --batch, CPU) fed from one source's cache, and from the three
      sources' caches mixed, alternated, best of --repeats: images/s of the whole step (loader, transform, model).
Prints figures, asserts nothing. Example:
    .venv/bin/python benchmarks/mix_speed.py --patients 400 --size 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from cxr14.config import PrepareConfig, TrainConfig
from cxr14.data.phantom.command import PHANTOMS
from cxr14.data.pipeline.loaders import build_datasets, load_splits, make_loader, prepare_cache
from cxr14.data.pipeline.transforms import AugmentConfig, DeviceTransform
from cxr14.model.create import create_model


def configs(root: Path, size: int, batch: int) -> dict[str, TrainConfig]:
    common = {"image_size": size, "batch_size": batch, "num_workers": 0, "max_train_samples": 0,
              "max_test_samples": 0, "device": "cpu", "progress": False, "model": "convnext_atto"}  # fmt: skip
    return {
        "nih": TrainConfig(dataset="nih", data_dir=root / "nih", **common),
        "chexpert": TrainConfig(dataset="chexpert", data_dir=root / "chexpert", **common),
        "csv": TrainConfig(dataset="csv", csv=root / "csv" / "dataset.csv", data_dir=root / "csv", **common),
        "mixed": TrainConfig(dataset="nih,chexpert,csv", data_dir=Path(f"{root / 'nih'},{root / 'chexpert'}"),
                             csv=root / "csv" / "dataset.csv", **common),
    }


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def steps_per_second(cfg: TrainConfig, steps: int) -> float:
    """Images/s of `steps` training steps from the cache (first batch excluded: warm-up)."""
    data = build_datasets(cfg, ("train",))["train"]
    loader = make_loader(data.dataset, cfg, True, torch.device("cpu"))
    model, dc = create_model(cfg.model, False, None, cfg.image_size, data.split.labels.shape[1])
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    transform = DeviceTransform(dc.mean, dc.std, dc.in_chans, AugmentConfig())
    seen, start = 0, None
    for i, batch in enumerate(loader):
        if i == 1:
            start = time.perf_counter()
        x = transform(batch["image"])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), batch["target"].clamp(min=0))
        loss.backward()
        opt.step()
        opt.zero_grad()
        seen += len(batch["image"]) if i >= 1 else 0
        if i == steps:
            break
    assert start is not None
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from cxr14.config import PhantomConfig

        for layout in ("nih", "chexpert", "csv"):
            PHANTOMS[layout](PhantomConfig(out=root / layout, layout=layout, n_patients=args.patients,
                                           size=args.size * 2, progress=False))  # fmt: skip
        cfgs = configs(root, args.size, args.batch)
        for name in ("nih", "chexpert", "csv"):
            c = cfgs[name]
            prepare_cache(PrepareConfig(dataset=name, data_dir=c.data_dir, csv=c.csv, image_size=args.size,
                                        progress=False))  # fmt: skip
        alone = {n: best(lambda n=n: load_splits(cfgs[n]), args.repeats) for n in ("nih", "chexpert", "csv")}
        mixed = best(lambda: load_splits(cfgs["mixed"]), args.repeats)
        print(f"metadata, best of {args.repeats}: " + ", ".join(f"{n} {t:.3f} s" for n, t in alone.items())
              + f"; sum {sum(alone.values()):.3f} s; the three mixed {mixed:.3f} s "
              f"({mixed / sum(alone.values()):.2f}x the sum)")  # fmt: skip
        one, three = [], []
        for _ in range(args.repeats):
            one.append(steps_per_second(cfgs["nih"], args.steps))
            three.append(steps_per_second(cfgs["mixed"], args.steps))
        print(f"training from the cache, {args.steps} steps of {args.batch} at {args.size} px, best of {args.repeats}: "
              f"one source {max(one):.1f} images/s, three sources {max(three):.1f} images/s "
              f"({max(three) / max(one):.3f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
