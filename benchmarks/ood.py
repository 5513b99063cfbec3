"""Does the out-of-distribution check flag what it should, and what does it cost? Measured on a phantom model.

A model trained on phantoms (--checkpoint, e.g. the demo's, or one trained here: convnext_atto at 64 px on 600
phantom patients, about two minutes on 2 cores) and its gate (fitted when training ended). Then, through
`cxr14 predict`'s own path (the film reader, its cheap checks, the one inference pass):

- held-out phantom test films, the model's own kind: the share flagged (target <= 2%);
- films that are not phantom chest films, each category on its own (target >= 95% flagged): the three real
  NIH films, natural photographs (scikit-learn's sample images; scipy's datasets when they are on disk), the
  same photographs in gray (which the colour check cannot see),
  rendered text, noise, flat images, checkerboards, phantoms rotated 90 degrees, inverted phantoms;
- beside the gate, the energy score of the logits (multi-label "joint energy", the sum over findings of
  log(1 + e^logit), Wang et al. 2021) with its threshold at the same 1% of validation films, on the same films;
- the time the check adds to `cxr14 predict` per film: the same films predicted with the gate and with a copy of
  the checkpoint without it, in turn, best of --repeat; and the cheap checks alone per film.

Prints figures, asserts nothing.

    .venv/bin/python benchmarks/ood.py                          # trains its phantom model first
    .venv/bin/python benchmarks/ood.py --checkpoint runs/demo-*/best_model.pth --data_dir demo_data
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
from sklearn.datasets import load_sample_images

from cxr14.config import PredictConfig, TrainConfig
from cxr14.data import phantom
from cxr14.data.films import list_films, open_film, unusual_film
from cxr14.data.loaders import build_datasets, make_loader
from cxr14.model.inference import predict
from cxr14.model.loading import load_model
from cxr14.training.conductor import train
from cxr14.using.predict import FilmSource, _loader, rows, run_predict

REAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "nih_real"


def phantom_model(work: Path) -> tuple[Path, Path]:
    """(best_model.pth, data folder): convnext_atto from scratch at 64 px on 600 phantom patients."""
    data = work / "data"
    phantom.write_dataset(data, n_patients=600, size=128, seed=0, progress=False)
    cfg = TrainConfig(data_dir=data, output_dir=work / "run", model="convnext_atto", image_size=64, batch_size=32,
                      num_workers=0, max_train_samples=0, max_test_samples=0, num_epochs=6, learning_rate=2e-3,
                      weight_decay=0.05, loss="asl", patience=6, device="cpu", progress=False)  # fmt: skip
    train(cfg)
    return work / "run" / "best_model.pth", data


def categories(work: Path, data: Path, n: int) -> dict[str, list[Path]]:
    """Folders of films that are not phantom chest films, `n` of each kind where there can be that many."""
    rng = np.random.default_rng(0)
    phantoms = sorted((data / "images").glob("*.png"))[:n]
    out: dict[str, list[Path]] = {}

    def save(kind: str, i: int, img: Image.Image, suffix: str = ".png") -> None:
        folder = work / "odd" / kind
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"{i:03d}{suffix}")
        out.setdefault(kind, []).append(folder / f"{i:03d}{suffix}")

    for i, f in enumerate(sorted(REAL.glob("*.png"))):
        save("real NIH films", i, Image.open(f))
    photos = list(load_sample_images().images)
    with contextlib.suppress(Exception):  # scipy's datasets are fetched by pooch: used only when already on disk
        import scipy.datasets

        photos += [np.asarray(scipy.datasets.face()), np.asarray(scipy.datasets.ascent()).astype(np.uint8)]
    for i, p in enumerate(photos):
        save("photographs", i, Image.fromarray(p), ".jpg")
        save("photographs in gray", i, Image.fromarray(p).convert("L"))  # past the colour check: the gate's job
    for i in range(n):
        t = Image.new("L", (256, 256), int(rng.integers(200, 256)))
        d = ImageDraw.Draw(t)
        for line in range(int(rng.integers(4, 14))):
            ink = int(rng.integers(0, 80))
            d.text((8, 8 + 18 * line), "Lorem ipsum dolor sit amet, consectetur adipiscing", fill=ink)
        save("rendered text", i, t)
        save("noise", i, Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8)))
        save("flat", i, Image.new("L", (256, 256), int(rng.integers(0, 256))))
        cell = int(rng.integers(4, 64))
        save("checkerboards", i, Image.fromarray((np.indices((256, 256)).sum(0) // cell % 2 * 255).astype(np.uint8)))
    for i, f in enumerate(phantoms):
        film = Image.open(f).convert("L")
        save("phantoms rotated 90 degrees", i, film.rotate(90))
        save("inverted phantoms", i, Image.fromarray(255 - np.asarray(film)))
    return out


def joint_energy(logits: np.ndarray) -> np.ndarray:
    """Higher for films like the training ones: the sum over findings of log(1 + e^logit)."""
    return np.logaddexp(0.0, np.asarray(logits, dtype=np.float64)).sum(axis=1)


def score_files(model, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(unusual as predict says it, joint energy) for film files."""
    pred = predict(model.classifier, _loader(FilmSource(paths, model.data_config.image_size), 32, 0), progress=False)
    table = rows(model, [str(paths[i]) for i in pred.index], pred)
    return np.array([r["unusual"] for r in table]), joint_energy(pred.logits)


def time_predict(checkpoint: Path, films: Path, out: Path) -> float:
    cfg = PredictConfig(paths=[films], checkpoint=checkpoint, out=out, num_workers=0, device="cpu", progress=False)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run_predict(cfg)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a phantom model's best_model.pth (default: train one)")
    parser.add_argument("--data_dir", type=Path, help="its phantom data folder (with --checkpoint)")
    parser.add_argument("--n", type=int, default=20, help="films per made-up category (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="timed predict runs of each checkpoint (best kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        ckpt, data = (args.checkpoint, args.data_dir) if args.checkpoint else phantom_model(work)
        model = load_model(ckpt, "cpu")
        gate = model.card.get("gate")
        if gate is None:
            print(f"{ckpt} has no gate: run cxr14 fit_gate first")
            return
        made = time.perf_counter() - t0
        print(f"model {model.card['model']} at {model.data_config.image_size} px ({ckpt}; {made:.0f} s to make); "
              f"gate: {gate['method']}, threshold {gate['threshold']:.2f} from {gate['n_validation']} validation "
              f"films, {gate['n_fit']} training films, {gate['features']} features")  # fmt: skip
        cfg = TrainConfig.from_json(model.card["config"], data_dir=data, max_test_samples=0, num_workers=0,
                                    progress=False)  # fmt: skip
        splits = build_datasets(cfg, ("val", "test"))
        held = {}
        for name, d in splits.items():
            loader = make_loader(d.dataset, cfg, False, model.classifier.device)
            pred = predict(model.classifier, loader, progress=False)
            held[name] = (pred.ood > 1, joint_energy(pred.logits))
        cut = float(np.quantile(held["val"][1], 0.01))  # energy's threshold: flags 1% of validation, as the gate
        flagged, energy = held["test"]
        print(f"\n{'films':<32}{'n':>5}{'gate + cheap checks':>21}{'energy (logits)':>17}   target")
        print(f"{'phantom test films (held out)':<32}{len(flagged):>5}{flagged.mean():>20.1%} "
              f"{(energy < cut).mean():>16.1%}   <= 2% flagged")  # fmt: skip
        for kind, paths in categories(work, data, args.n).items():
            unusual, e = score_files(model, paths)
            print(f"{kind:<32}{len(paths):>5}{unusual.mean():>20.1%} {(e < cut).mean():>16.1%}   >= 95% flagged")

        films = work / "timed"
        films.mkdir()
        for i, f in enumerate(sorted((data / "images").glob("*.png"))[:256]):
            Image.open(f).save(films / f"{i:03d}.png")
        state = torch.load(ckpt, weights_only=True)
        state.pop("gate")
        bare = work / "bare.pth"
        torch.save(state, bare)
        with_gate, without = [], []
        for _ in range(args.repeat):  # in turn, so that both meet the same machine load
            with_gate.append(time_predict(ckpt, films, work / "a.csv"))
            without.append(time_predict(bare, films, work / "b.csv"))
        n_films = len(list_films([films]))
        per_film = min(without) / n_films
        t0 = time.perf_counter()
        for f in sorted(films.iterdir()):
            unusual_film(open_film(f))
        cheap_and_decode = (time.perf_counter() - t0) / n_films
        t0 = time.perf_counter()
        for f in sorted(films.iterdir()):
            open_film(f)
        decode = (time.perf_counter() - t0) / n_films
        print(f"\npredict on {n_films} phantom films (best of {args.repeat}): {min(with_gate):.2f} s with the gate, "
              f"{min(without):.2f} s without: the gate adds {100 * (min(with_gate) / min(without) - 1):+.1f}% "
              f"(target <= 10%); the cheap checks {1e3 * (cheap_and_decode - decode):.2f} ms per film "
              f"({100 * (cheap_and_decode - decode) / per_film:.1f}% of predict's {1e3 * per_film:.1f} ms per "
              f"film)")  # fmt: skip


if __name__ == "__main__":
    main()
