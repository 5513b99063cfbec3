"""The resized cache: same pixels as decoding the PNGs, stale/damaged caches refused, resumable builds."""

from __future__ import annotations

import fcntl
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from cxr14.data.films.decode import read_gray
from cxr14.data.pipeline import cache
from cxr14.data.pipeline.cache import CacheSource, open_cache, prepare
from cxr14.data.pipeline.dataset import FileSource, XrayDataset, collate_skipping_bad
from cxr14.errors import UserError

N_IMAGES = 40  # three chunks of CHUNK_ROWS=16, the last one short
CACHE_FILES = ("pixels.npy", "index.tsv", "ok.npy", "done.npy", "manifest.json")


def _pixels(k: int, side: int = 96) -> np.ndarray:
    """Smooth structure plus noise: enough detail that resize differences would show."""
    rng = np.random.default_rng(k)
    yy, xx = np.mgrid[0:side, 0:side]
    img = 128 + 60 * np.sin(xx / (5 + k % 7)) * np.cos(yy / (3 + k % 5)) + rng.normal(0, 20, (side, side))
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_png(path: Path, k: int, side: int = 96) -> None:
    img = Image.fromarray(_pixels(k, side))
    if k == 3:  # NIH has 519 RGBA images: the cache must read them as grayscale too
        img = img.convert("RGBA")
    img.save(path)


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, list[str], list[Path]]:
    """A tiny NIH-like folder: data/images/<patient>_000.png, names deliberately not in sorted order."""
    folder = tmp_path / "data" / "images"
    folder.mkdir(parents=True)
    names, paths = [], []
    for k in range(N_IMAGES):
        path = folder / f"{(k * 7) % N_IMAGES:08d}_000.png"
        _write_png(path, k)
        names.append(path.name)
        paths.append(path)
    return folder.parent, names, paths


def _batches(source, n: int) -> list[dict]:
    dataset = XrayDataset(source, np.zeros((n, 14), dtype=np.float32), skip_bad=True)
    return list(DataLoader(dataset, batch_size=8, collate_fn=collate_skipping_bad))


def _files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in CACHE_FILES}


def test_cached_batches_equal_decoded_batches(data, tmp_path):
    data_dir, names, paths = data
    info = prepare(data_dir, names, paths, 64, tmp_path / "cache", workers=2, progress=False)
    assert (info.n_images, info.n_bad, info.n_reused) == (N_IMAGES, 0, 0)
    source, reason = open_cache(tmp_path / "cache", names, paths, 64)
    assert source is not None, reason
    assert "using cache" in reason
    for cached, decoded in zip(_batches(source, N_IMAGES), _batches(FileSource(paths, 64), N_IMAGES), strict=True):
        assert cached["image"].dtype == decoded["image"].dtype
        assert cached["image"].equal(decoded["image"])
        assert cached["index"].equal(decoded["index"])
    # a subset of the cached names, in any order, maps onto the right rows
    subset = open_cache(tmp_path / "cache", names[::-3], paths[::-3], 64).source
    assert subset is not None
    for i, path in enumerate(paths[::-3]):
        np.testing.assert_array_equal(subset.read(i), read_gray(path, 64))


def test_second_prepare_reuses_complete_cache(data, tmp_path):
    data_dir, names, paths = data
    prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=1, progress=False)
    again = prepare(data_dir, names[::-1], paths[::-1], 32, tmp_path / "cache", workers=1, progress=False)
    assert again.n_reused == N_IMAGES


def test_larger_cache_resized_down_is_close(data, tmp_path):
    """Two resizes (96 -> 64 -> 48) are not one (96 -> 48): measured max 7 levels on these noisy
    images, mean about 1.2; the test allows 8 and a mean under 2."""
    data_dir, names, paths = data
    prepare(data_dir, names, paths, 64, tmp_path / "cache", workers=1, progress=False)
    source, reason = open_cache(tmp_path / "cache", names, paths, 48)
    assert source is not None and "resized to 48" in reason
    diffs = np.stack([source.read(i).astype(int) - read_gray(p, 48) for i, p in enumerate(paths)])
    assert source.read(0).shape == (48, 48)
    assert np.abs(diffs).max() <= 8
    assert np.abs(diffs).mean() < 2


def test_smaller_or_absent_cache_is_refused_with_reason(data, tmp_path):
    data_dir, names, paths = data
    assert open_cache(tmp_path / "nowhere", names, paths, 64) == (None, f"no cache under {tmp_path / 'nowhere'}")
    prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=1, progress=False)
    source, reason = open_cache(tmp_path / "cache", names, paths, 64)
    assert source is None and "smaller than 64 px" in reason


def test_other_files_are_refused(data, tmp_path):
    data_dir, names, paths = data
    prepare(data_dir, names[:20], paths[:20], 32, tmp_path / "cache", workers=1, progress=False)
    source, reason = open_cache(tmp_path / "cache", names, paths, 32)
    assert source is None and "not in it" in reason


def test_stale_cache_is_refused_and_only_changed_chunks_redone(data, tmp_path):
    data_dir, names, paths = data
    prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=1, progress=False)
    k = names.index(sorted(names)[5])  # row 5: in the first chunk
    _write_png(paths[k], 1000, side=80)  # re-downloaded / replaced: a different size in bytes
    source, reason = open_cache(tmp_path / "cache", names, paths, 32)
    assert source is None and "stale" in reason and names[k] in reason

    info = prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=1, progress=False)
    assert info.n_reused == N_IMAGES - cache.CHUNK_ROWS  # one chunk decoded again, not all
    prepare(data_dir, names, paths, 32, tmp_path / "fresh", workers=1, progress=False)
    assert _files(tmp_path / "cache" / "cache_32") == _files(tmp_path / "fresh" / "cache_32")
    assert open_cache(tmp_path / "cache", names, paths, 32).source is not None


def test_truncated_or_incomplete_cache_is_refused(data, tmp_path):
    data_dir, names, paths = data
    prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=1, progress=False)
    directory = tmp_path / "cache" / "cache_32"
    manifest = (directory / "manifest.json").read_text()
    (directory / "manifest.json").write_text(manifest.replace('"complete": true', '"complete": false'))
    source, reason = open_cache(tmp_path / "cache", names, paths, 32)
    assert source is None and "incomplete" in reason

    (directory / "manifest.json").write_text(manifest)
    with open(directory / "pixels.npy", "r+b") as f:
        f.truncate((directory / "pixels.npy").stat().st_size - 100)
    source, reason = open_cache(tmp_path / "cache", names, paths, 32)
    assert source is None and "truncated" in reason


def test_interrupted_prepare_resumes_byte_identical(data, tmp_path, monkeypatch):
    data_dir, names, paths = data
    calls = {"n": 0}

    def crash_after_20(path, size):
        calls["n"] += 1
        if calls["n"] > 20:  # mid-way through the second chunk: a half-written chunk on disk
            raise KeyboardInterrupt
        return read_gray(path, size)

    monkeypatch.setattr(cache, "read_gray", crash_after_20)
    with pytest.raises(KeyboardInterrupt):
        prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=1, progress=False)
    monkeypatch.undo()
    source, reason = open_cache(tmp_path / "cache", names, paths, 32)
    assert source is None and "incomplete" in reason

    info = prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=2, progress=False)
    assert info.n_reused == cache.CHUNK_ROWS  # the first chunk was kept
    prepare(data_dir, names, paths, 32, tmp_path / "fresh", workers=1, progress=False)
    assert _files(tmp_path / "cache" / "cache_32") == _files(tmp_path / "fresh" / "cache_32")


def test_bad_image_fails_with_its_name(data, tmp_path):
    data_dir, names, paths = data
    paths[7].write_bytes(paths[7].read_bytes()[:200])  # truncated download
    with pytest.raises(UserError, match=names[7]):
        prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=2, progress=False)
    missing = [*paths[:-1], data_dir / "images" / "absent.png"]
    with pytest.raises(UserError, match=r"absent\.png"):
        prepare(data_dir, names, missing, 32, tmp_path / "cache2", workers=1, progress=False)


def test_bad_image_skipped_is_marked_and_counted(data, tmp_path):
    data_dir, names, paths = data
    paths[7].write_bytes(paths[7].read_bytes()[:200])
    info = prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=2, progress=False, on_bad_image="skip")
    assert info.bad == (names[7],)
    source, _ = open_cache(tmp_path / "cache", names, paths, 32)
    assert source is not None
    with pytest.raises(ValueError, match=names[7]):
        source.read(7)
    bad = [entry for batch in _batches(source, N_IMAGES) for entry in batch["bad"]]
    assert len(bad) == 1 and bad[0][0] == 7 and names[7] in bad[0][1]


def test_source_pickles_without_pixels(data, tmp_path):
    """DataLoader workers get the source pickled: it must not drag the mapped array along."""
    data_dir, names, paths = data
    prepare(data_dir, names, paths, 64, tmp_path / "cache", workers=1, progress=False)
    source = open_cache(tmp_path / "cache", names, paths, 64).source
    assert isinstance(source, CacheSource)
    first = source.read(0)
    clone = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < N_IMAGES * 64 * 64 / 2
    np.testing.assert_array_equal(clone.read(0), first)


def test_concurrent_prepare_is_refused(data, tmp_path):
    data_dir, names, paths = data
    directory = tmp_path / "cache" / "cache_32"
    directory.mkdir(parents=True)
    with open(directory / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="Another"):
            prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=1, progress=False)
    assert prepare(data_dir, names, paths, 32, tmp_path / "cache", workers=1, progress=False).n_images == N_IMAGES
