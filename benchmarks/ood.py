"""Does the unusual-film check flag what it should, and what does it cost? Before and after, on two models.

Two models, each with its own films: a model trained on phantoms (--checkpoint, e.g. the demo's, or one trained
here: convnext_atto at 64 px on 600 phantom patients, about two minutes on 2 cores), and, with --kermany, a model
trained on Kermany et al.'s real pediatric films (`benchmarks/real_pneumonia.py --keep DIR` leaves one in
DIR/run). For each, through `cxr14 predict`'s own path (the film reader, its cheap checks, the one inference pass),
the share of films flagged as unusual, kind by kind:

- the model's own held-out test films (target <= 5%, phantom model <= 2%);
- films of another population or kind (target >= 90%): real adult NIH films (the three full-size ones in
  tests/data/nih_real; the 1,000 of nih1000_64px at 64 px, brought to the model's size as predict brings any
  film), NEMA's adult chest CR RG1 and its extremity CR RG3 (pydicom-data), the model's own test films rotated by
  90 and by 180 degrees, phantoms (for the real-film model);
- made-up kinds (target 100%): photographs (in colour and in gray), rendered text, noise, flat images,
  checkerboards, phantoms on their side, inverted phantoms.

"before" is cxr14 0.1's check: the colour, shape and blank checks, and a gate of Mahalanobis distances on the
pooled features with its threshold at the validation films' 99th percentile (fitted here on the same films, read
by the same `Gate` class through its 0.1 form). "after" is today's: the same cheap checks and the film's
orientation (`data.orientation`), and the gate on several stages' statistics (`model.gate`). Then the threshold's
stability when the validation split is small, and the time the check adds to `cxr14 predict`. Prints figures,
asserts nothing.

    .venv/bin/python benchmarks/ood.py [--kermany /tmp/bench/run/best_model.pth] [--kermany_cache /tmp/bench/cache]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from sklearn.covariance import LedoitWolf
from sklearn.datasets import load_sample_images

from cxr14.config import PredictConfig, TrainConfig
from cxr14.data import phantom
from cxr14.data.films.orientation import rotations
from cxr14.data.films.upload import list_films, open_film, unusual_film
from cxr14.data.pipeline.loaders import build_datasets, image_index, make_loader
from cxr14.model import gate
from cxr14.model.inference import feature_layout, predict
from cxr14.model.loading import LoadedModel, load_model
from cxr14.training.conductor import train
from cxr14.using.predict import FilmSource, _loader, run_predict, to_model_size

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "data" / "nih_real"
NIH64 = REPO.parent / "shared" / "real" / "nih1000_64px"
ROTATED = "looks rotated"


def phantom_model(work: Path) -> tuple[Path, Path]:
    """(best_model.pth, data folder): convnext_atto from scratch at 64 px on 600 phantom patients."""
    data = work / "data"
    phantom.write_dataset(data, n_patients=600, size=128, seed=0, progress=False)
    cfg = TrainConfig(data_dir=data, output_dir=work / "run", model="convnext_atto", image_size=64, batch_size=32,
                      num_workers=0, max_train_samples=0, max_test_samples=0, num_epochs=6, learning_rate=2e-3,
                      weight_decay=0.05, loss="asl", patience=6, device="cpu", progress=False)  # fmt: skip
    train(cfg)
    return work / "run" / "best_model.pth", data


def save(folder: Path, i: int, img: Image.Image, suffix: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    img.save(folder / f"{i:04d}{suffix}")
    return folder / f"{i:04d}{suffix}"


def foreign_kinds(work: Path, own_test: list[Path], for_phantom_model: bool, n: int) -> dict[str, list[Path]]:
    """Films that are not the model's kind, `n` of each made-up kind, every real one there is."""
    import data_store

    rng = np.random.default_rng(0)
    nema = Path(data_store.__file__).parent / "data"
    out: dict[str, list[Path]] = {
        "real adult NIH films, full size": sorted(REAL.glob("*.png")),
        "real adult NIH films, 64 px": sorted(NIH64.rglob("*.png")),
        "NEMA adult chest CR (RG1)": [nema / f"RG1_{k}.dcm" for k in ("UNCR", "J2KR", "J2KI")],
        "NEMA extremity CR (RG3)": [nema / f"RG3_{k}.dcm" for k in ("UNCR", "J2KR", "J2KI")],
    }
    for angle in (90, 180):
        out[f"own test films rotated {angle}"] = [save(work / f"rot{angle}", i, Image.fromarray(
            open_film(f).pixels).rotate(angle, expand=True)) for i, f in enumerate(own_test[::4])]  # fmt: skip
    phantoms = work / "phantoms"
    phantom.write_dataset(phantoms, n_patients=20, size=256, seed=5, workers=1, progress=False)
    films = sorted((phantoms / "images").glob("*.png"))[:n]
    if not for_phantom_model:
        out["phantoms (synthetic adult films)"] = films
    photos = list(load_sample_images().images)
    out["photographs"] = [save(work / "photo", i, Image.fromarray(p), ".jpg") for i, p in enumerate(photos)]
    out["photographs in gray"] = [save(work / "gray", i, Image.fromarray(p).convert("L"))
                                  for i, p in enumerate(photos)]  # fmt: skip
    text, noise, flat, checks = [], [], [], []
    for i in range(n):
        t = Image.new("L", (256, 256), int(rng.integers(200, 256)))
        d = ImageDraw.Draw(t)
        for line in range(int(rng.integers(4, 14))):
            ink = int(rng.integers(0, 80))
            d.text((8, 8 + 18 * line), "Lorem ipsum dolor sit amet, consectetur adipiscing", fill=ink)
        text.append(save(work / "text", i, t))
        noise.append(save(work / "noise", i, Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8))))
        flat.append(save(work / "flat", i, Image.new("L", (256, 256), int(rng.integers(0, 256)))))
        cell = int(rng.integers(4, 64))
        checks.append(save(work / "checks", i, Image.fromarray((np.indices((256, 256)).sum(0) // cell % 2 * 255)
                                                                .astype(np.uint8))))  # fmt: skip
    out.update({"rendered text": text, "noise": noise, "flat": flat, "checkerboards": checks})
    out["phantoms on their side"] = [save(work / "side", i, Image.open(f).convert("L").rotate(90))
                                     for i, f in enumerate(films)]  # fmt: skip
    out["inverted phantoms"] = [save(work / "inv", i, Image.fromarray(255 - np.asarray(Image.open(f).convert("L"))))
                                for i, f in enumerate(films)]  # fmt: skip
    return {k: v for k, v in out.items() if v}


def old_gate(train_features: np.ndarray, val_features: np.ndarray, width: int) -> gate.Gate:
    """cxr14 0.1's gate on the same films: the pooled features (the first `width` columns), Ledoit-Wolf, the
    validation films' 99th percentile; read through the Gate's 0.1 form, as an old checkpoint is."""
    estimate = LedoitWolf().fit(train_features[:, :width].astype(np.float64))
    precision = np.linalg.pinv(estimate.covariance_, hermitian=True)
    probe = gate.from_state({"mean": estimate.location_, "precision": precision, "threshold": 1.0, "n_fit": 0,
                             "n_validation": 0}, "0.1")  # fmt: skip
    threshold = float(np.quantile(probe.distances(val_features), gate.QUANTILE))
    return gate.from_state({"mean": estimate.location_, "precision": precision, "threshold": threshold,
                            "n_fit": len(train_features), "n_validation": len(val_features)}, "0.1")  # fmt: skip


class Judged:
    """A model with both gates fitted on its own training and validation films."""

    def __init__(self, model: LoadedModel, cfg: TrainConfig) -> None:
        self.model = model
        data = build_datasets(cfg, ("train", "val", "test"))
        feats = {}
        for name, d in data.items():
            loader = make_loader(d.dataset, cfg, False, model.classifier.device)
            feats[name] = predict(model.classifier, loader, progress=False, features=True).features.astype(np.float64)
        self.features = feats
        index = image_index(cfg, data["test"].split.root)
        self.test_paths = [Path(index[n]) for n in data["test"].split.names]
        layout = feature_layout(model.classifier.model)
        self.new = gate.fit(feats["train"], feats["val"], layout)
        self.old = old_gate(feats["train"], feats["val"], layout[0][1])

    def shares(self, features: np.ndarray, notes: list[str]) -> tuple[float, float]:
        """(before, after): the share flagged by cxr14 0.1's check and by today's."""
        rotated = np.array([ROTATED in n for n in notes])
        cheap = np.array([bool(n) for n in notes]) & ~rotated  # colour, shape, blank: both have these
        before = cheap | (self.old.scores(features) > 1)
        after = cheap | rotated | (self.new.scores(features) > 1)
        return float(before.mean()), float(after.mean())

    def files(self, paths: list[Path]) -> tuple[float, float]:
        pred = predict(self.model.classifier, _loader(FilmSource(paths, self.model.data_config.image_size), 32, 0),
                       progress=False, features=True)  # fmt: skip
        return self.shares(pred.features.astype(np.float64), list(pred.notes))


def table(title: str, judged: Judged, kinds: dict[str, list[Path]], own_target: str) -> None:
    print(f"\n{title}\n{'films':<40}{'n':>6}{'before':>9}{'after':>9}   target")
    test = judged.features["test"]
    before, after = judged.shares(test, [""] * len(test))
    print(f"{'own test films (held out)':<40}{len(test):>6}{before:>9.1%}{after:>9.1%}   {own_target}")
    for kind, paths in kinds.items():
        before, after = judged.files(paths)
        target = ">= 90%" if kind.startswith(("real", "NEMA", "own test", "phantoms (")) else "100%"
        print(f"{kind:<40}{len(paths):>6}{before:>9.1%}{after:>9.1%}   {target}")


def small_validation(judged: Judged, sizes: tuple[int, ...] = (10, 20, 40, 100), draws: int = 50) -> None:
    """The share of the model's own test films flagged when the threshold is set on a random n validation films:
    the 0.1 rule (their 99th percentile) against today's (the training films' tail, corrected by their median)."""
    g = judged.new
    on_train, on_val, on_test = (g.distances(judged.features[k]) for k in ("train", "val", "test"))
    rng = np.random.default_rng(0)
    print(f"\nthreshold from n validation films ({draws} random draws each): own test films flagged, mean "
          f"[5th-95th percentile of the draws]")  # fmt: skip
    for n in (*[s for s in sizes if s < len(on_val)], len(on_val)):
        old, new = [], []
        for _ in range(draws if n < len(on_val) else 1):
            sub = rng.choice(on_val, n, replace=False)
            old.append(float((on_test > np.quantile(sub, gate.QUANTILE)).mean()))
            new.append(float((on_test > gate.threshold_from(on_train, sub)).mean()))
        print(f"  n = {n:>4}: 99th percentile of validation {np.mean(old):6.1%} [{np.quantile(old, .05):.1%}-"
              f"{np.quantile(old, .95):.1%}]   training tail x median ratio {np.mean(new):6.1%} "
              f"[{np.quantile(new, .05):.1%}-{np.quantile(new, .95):.1%}]")  # fmt: skip


def time_predict(checkpoint: Path, films: Path, out: Path) -> float:
    cfg = PredictConfig(paths=[films], checkpoint=checkpoint, out=out, num_workers=0, device="cpu", progress=False)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run_predict(cfg)
    return time.perf_counter() - t0


def costs(work: Path, judged: Judged, films: list[Path], repeat: int) -> None:
    """predict with today's gate against the same checkpoint without one, in turn; the cheap checks per film."""
    folder = work / "timed"
    for i, f in enumerate(films[:256]):
        save(folder, i, Image.fromarray(open_film(f).pixels))
    state = torch.load(judged.model.card["checkpoint"], weights_only=True)
    state["gate"] = judged.new.to_state()
    gated, bare = work / "gated.pth", work / "bare.pth"
    torch.save(state, gated)
    state.pop("gate")
    torch.save(state, bare)
    with_gate, without = [], []
    for _ in range(repeat):  # in turn, so that both meet the same machine load
        with_gate.append(time_predict(gated, folder, work / "a.csv"))
        without.append(time_predict(bare, folder, work / "b.csv"))
    n = len(list_films([folder]))
    t0 = time.perf_counter()
    for f in sorted(folder.iterdir()):
        unusual_film(open_film(f))
    checks = time.perf_counter() - t0
    t0 = time.perf_counter()
    for f in sorted(folder.iterdir()):
        open_film(f)
    decode = time.perf_counter() - t0
    size = judged.model.data_config.image_size
    batch = torch.from_numpy(np.stack([to_model_size(open_film(f).pixels, size) for f in sorted(folder.iterdir())]))
    rotations(batch[:32, None])  # read the network once
    t0 = time.perf_counter()
    for i in range(0, n, 32):
        rotations(batch[i : i + 32, None])
    turned = time.perf_counter() - t0
    base = min(without) - turned  # predict with neither the gate nor the orientation check
    print(f"\npredict on {n} films (best of {repeat}): {min(with_gate):.2f} s with the gate, {min(without):.2f} s "
          f"without; the orientation check, batched as predict runs it, {1e3 * turned / n:.3f} ms per film (in "
          f"both): the two checks add {100 * (min(with_gate) / base - 1):+.1f}% to predict's time (target <= 10%; "
          f"the gate {100 * (min(with_gate) - min(without)) / base:+.1f}%, the orientation {100 * turned / base:+.1f}%)"
          f"; the colour, shape and blank checks {1e3 * (checks - decode) / n:.2f} ms per film")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a phantom model's best_model.pth (default: train one)")
    parser.add_argument("--data_dir", type=Path, help="its phantom data folder (with --checkpoint)")
    parser.add_argument("--kermany", type=Path, help="a model trained on Kermany et al.'s films (best_model.pth)")
    parser.add_argument("--kermany_cache", type=Path, help="the cache its run used (--cache_dir), if any")
    parser.add_argument("--n", type=int, default=20, help="films per made-up kind (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="timed predict runs of each checkpoint (best kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = []
        if args.kermany:
            model = load_model(args.kermany, "cpu")
            cfg = TrainConfig.from_json(model.card["config"], cache_dir=args.kermany_cache, num_workers=0,
                                        progress=False)  # fmt: skip
            models.append(("the Kermany model (real pediatric films)", model, cfg, False, "<= 5%"))
        ckpt, data = (args.checkpoint, args.data_dir) if args.checkpoint else phantom_model(work)
        model = load_model(ckpt, "cpu")
        cfg = TrainConfig.from_json(model.card["config"], data_dir=data, max_test_samples=0, num_workers=0,
                                    progress=False)  # fmt: skip
        models.append(("the phantom model (NIH-format phantoms)", model, cfg, True, "<= 2%"))
        for title, model, cfg, is_phantom, own in models:
            judged = Judged(model, cfg)
            g = judged.new
            print(f"\n== {title}: {model.card['model']} at {model.data_config.image_size} px; today's gate: "
                  f"{len(g.parts)} parts, threshold {g.threshold:.3f}; {g.n_fit} training, {g.n_validation} "
                  f"validation films")  # fmt: skip
            test_paths = judged.test_paths
            kinds = foreign_kinds(work / title[:12].replace(" ", "_"), test_paths, is_phantom, args.n)
            table("flagged as unusual, before (cxr14 0.1) and after", judged, kinds, own)
            small_validation(judged)
            costs(work / f"cost{len(title)}", judged, test_paths, args.repeat)


if __name__ == "__main__":
    main()
