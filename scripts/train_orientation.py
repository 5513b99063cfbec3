"""Train the film-orientation check (`cxr14.data.films.orientation`) and write its weights,
src/cxr14/data/films/orientation.safetensors.

Self-supervised: every training film is shown upright and turned by 90, 180 and 270 degrees, and the network
learns which. Films: real ones only, plus phantoms - Kermany et al.'s pediatric training films (train/ of the
release), NIH's adult films in nih1000_64px's train/ and valid/ folders, and NIH-format phantoms (so that the
phantom models' users get no false alarm). Held out, and reported: the release's test/ children, nih1000_64px's
test/ folder, three full-size NIH films. About two minutes on 2 CPU cores.

    .venv/bin/python scripts/train_orientation.py [--kermany DIR] [--nih DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cxr14.data import phantom
from cxr14.data.films.orientation import ANGLES, SIZE, WEIGHTS, OrientationNet, prepare
from cxr14.data.films.upload import read_film

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NIH_REAL = REPO / "tests" / "data" / "nih_real"
#: The three full-size NIH films of the tests are also in nih1000_64px's train/ folder: left out, so held out.
HELD_NIH = {p.name for p in NIH_REAL.glob("*.png")}


def films(paths: list[Path]) -> np.ndarray:
    """Each film at 2 x SIZE (room for the augmentation's crop), uint8 [N, 2S, 2S]."""
    side = 2 * SIZE
    return np.stack([np.asarray(Image.fromarray(read_film(p)).resize((side, side), Image.Resampling.BILINEAR))
                     for p in paths])  # fmt: skip


def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A few degrees of tilt, scale and shift, a left-right flip (the heart's side says nothing of up and down),
    and gamma: one film never looks quite the same twice. uint8 [B, 2S, 2S] in and out."""
    out = []
    for film in batch:
        img = Image.fromarray(film)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = img.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR)
        side = img.size[0]
        crop = int(side * rng.uniform(0.8, 1.0))
        x0, y0 = (int(v) for v in rng.integers(0, side - crop + 1, size=2))
        img = img.crop((x0, y0, x0 + crop, y0 + crop)).resize((side, side), Image.Resampling.BILINEAR)
        arr = (np.asarray(img, dtype=np.float32) / 255.0) ** float(np.exp(rng.uniform(-0.4, 0.4)))
        out.append((arr * 255).astype(np.uint8))
    return np.stack(out)


def turned(films: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Every film (uint8 [B, H, W]) in all four orientations (torch.rot90 turns counter-clockwise, as PIL's rotate),
    as the network reads them (`prepare`, the inference pass's own), with the labels."""
    x = prepare(torch.from_numpy(films)[:, None])
    images = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(len(ANGLES))])
    labels = torch.arange(len(ANGLES)).repeat_interleave(len(films))
    return images, labels


def accuracy(net: OrientationNet, films: np.ndarray) -> float:
    """The share of films (each in four orientations, no augmentation) whose orientation the network names."""
    images, labels = turned(films)
    with torch.no_grad():
        called = net(images).argmax(1)
    return float((called == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kermany", type=Path, default=SHARED / "real" / "kermany_pneumonia_224")
    parser.add_argument("--nih", type=Path, default=SHARED / "real" / "nih1000_64px")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        phantom.write_dataset(Path(tmp), n_patients=300, size=128, seed=7, progress=False)
        fake = sorted((Path(tmp) / "images").glob("*.png"))
        real_nih = [p for p in sorted((args.nih / "train").rglob("*.png")) + sorted((args.nih / "valid").rglob("*.png"))
                    if p.name not in HELD_NIH]  # fmt: skip
        train = films(sorted((args.kermany / "train").rglob("*.jpeg")) + real_nih + fake)
    held = {
        "Kermany test children": films(sorted((args.kermany / "test").rglob("*.jpeg"))),
        "NIH test folder (adults, 64 px)": films(sorted((args.nih / "test").rglob("*.png"))),
        "three full-size NIH films": films(sorted(NIH_REAL.glob("*.png"))),
    }
    print(f"training films: {len(train)} (x4 orientations)")
    net = OrientationNet()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = args.epochs * (len(train) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for epoch in range(args.epochs):
        net.train()
        order = rng.permutation(len(train))
        losses = []
        for i in range(0, len(order) - 63, 64):
            images, labels = turned(augment(train[order[i : i + 64]], rng))
            loss = F.cross_entropy(net(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        net.eval()
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}; held out: "
              + ", ".join(f"{k} {accuracy(net, v):.1%}" for k, v in held.items()), flush=True)  # fmt: skip
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, args.out)
    print(f"written {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
