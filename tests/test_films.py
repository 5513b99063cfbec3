"""Reading new films (PNG, JPEG, DICOM) for predict and the web page, and refusing bad ones in one line."""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import SecondaryCaptureImageStorage

from cxr14.data.films.decode import read_gray
from cxr14.data.films.upload import MAX_PIXELS, list_films, read_film
from cxr14.data.phantom.writer import dicom_dataset
from cxr14.errors import FilmError, UserError

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (40, 56), dtype=np.uint8)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def refused(source, match: str, **kw) -> str:
    """read_film must raise FilmError matching `match`, with a one-line message."""
    with pytest.raises(FilmError, match=match) as info:
        read_film(source, **kw)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300
    return str(info.value)


# --------------------------------------------------------------------------------------------------
# PNG and JPEG
# --------------------------------------------------------------------------------------------------


def test_png_modes_from_path_and_bytes(tmp_path: Path) -> None:
    img = Image.fromarray(GRAY, mode="L")
    for mode in ("L", "RGB", "RGBA", "P", "LA"):
        path = tmp_path / f"x_{mode}.png"
        img.convert(mode).save(path)
        expected = np.asarray(img.convert(mode).convert("L"))
        got = read_film(path)
        assert got.dtype == np.uint8 and got.shape == GRAY.shape
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(read_film(path.read_bytes()), got)
        np.testing.assert_array_equal(read_gray(path), got)  # one conversion for training and prediction


def test_16bit_png_is_stretched_not_clipped(tmp_path: Path) -> None:
    """A 12-bit film in a 16-bit PNG: PIL's own convert("L") would clip it to white above 255."""
    values = np.linspace(100, 4000, 40 * 56).reshape(40, 56).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    got = read_film(path)
    assert got.min() == 0 and got.max() == 255
    np.testing.assert_allclose(got, (values - 100) / 3900 * 255, atol=0.51)
    np.testing.assert_array_equal(read_gray(path), got)


def test_jpeg(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(0, 255, 56, dtype=np.uint8), (40, 1))
    path = tmp_path / "x.jpg"
    Image.fromarray(smooth).convert("RGB").save(path, quality=95)
    got = read_film(path)
    assert got.shape == smooth.shape and np.abs(got.astype(int) - smooth).max() <= 6


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo of a film stores its pixels sideways and the rotation in EXIF (tag 274)."""
    exif = Image.Exif()
    exif[274] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "photo.jpg"
    Image.fromarray(GRAY).save(path, exif=exif, quality=95)
    got = read_film(path)
    assert got.shape == (GRAY.shape[1], GRAY.shape[0])
    assert np.abs(got.astype(int) - np.rot90(GRAY, k=-1)).mean() < 12  # JPEG noise on random pixels


def test_bad_pictures_get_one_line(tmp_path: Path) -> None:
    good = png_bytes(Image.fromarray(GRAY))
    assert "empty file" in refused(b"", "empty")
    (tmp_path / "empty.png").write_bytes(b"")
    refused(tmp_path / "empty.png", "empty")
    refused(good[: len(good) // 2], "truncated or damaged PNG")
    refused(b"%PDF-1.7\n...", "PDF")
    refused(b"<!DOCTYPE html><html><body>oops</body></html>", "HTML")
    refused(b"Image Index,Finding Labels\n00000001_000.png,Mass\n", "text")
    refused(bytes(range(256)) * 2, "not a PNG, JPEG or DICOM")
    gif = io.BytesIO()
    Image.fromarray(GRAY).save(gif, format="GIF")
    refused(gif.getvalue(), "GIF")
    refused(tmp_path / "missing.png", "cannot open")
    refused(tmp_path, "folder")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height gray pixels and holds almost none: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bombs_refused_before_decoding() -> None:
    side = int(MAX_PIXELS**0.5) + 100  # over our limit, under PIL's own
    assert "MP limit" in refused(_png_header_only(side, side), "over the")
    refused(_png_header_only(100_000, 100_000), "too large")  # PIL's own guard, put in our words
    refused(png_bytes(Image.fromarray(GRAY)), "MP limit", max_pixels=1000)


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------


def make_dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", **elements) -> Dataset:
    """A minimal 16-bit (12 stored) Secondary Capture dataset holding `pixels`."""
    ds = dicom_dataset(pixels, photometric, "CR", SecondaryCaptureImageStorage)
    for key, value in elements.items():
        setattr(ds, key, value)
    return ds


def dicom_bytes(ds: Dataset, file_format: bool = True) -> bytes:
    """The file as a PACS writes it, or (file_format=False) bare implicit-VR data without preamble or 'DICM'."""
    buf = io.BytesIO()
    if file_format:
        ds.save_as(buf, enforce_file_format=True)
    else:
        bare = Dataset(ds)  # the elements without file_meta
        bare.save_as(buf, enforce_file_format=False, implicit_vr=True, little_endian=True)
    return buf.getvalue()


RAMP = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))  # 8 x 64, values 0..4032


def test_dicom_window_and_monochrome1(tmp_path: Path) -> None:
    """The window maps [C - W/2, C + W/2] onto 0..255 (clipping outside); MONOCHROME1 is its inverse."""
    window = {"WindowCenter": 2048, "WindowWidth": 1024}
    mono2 = read_film(dicom_bytes(make_dicom(RAMP, **window)))
    path = tmp_path / "mono1.dcm"
    make_dicom(RAMP, "MONOCHROME1", **window).save_as(path, enforce_file_format=True)
    mono1 = read_film(path)
    np.testing.assert_array_equal(mono1, 255 - mono2)
    row = mono2[0].astype(int)
    assert (row[RAMP[0] <= 1536] == 0).all() and (row[RAMP[0] >= 2560] == 255).all()
    inside = (RAMP[0] > 1600) & (RAMP[0] < 2500)
    np.testing.assert_allclose(row[inside], (RAMP[0][inside] - 1535.5) / 1023 * 255, atol=1.0)
    assert (np.diff(row) >= 0).all()


def test_dicom_without_window_uses_full_range_after_rescale() -> None:
    """No VOI: the (rescaled) values' own min..max; a 12-bit film becomes a full 8-bit one."""
    plain = read_film(dicom_bytes(make_dicom(RAMP)))
    assert plain.min() == 0 and plain.max() == 255
    np.testing.assert_allclose(plain[0], RAMP[0] / 4032 * 255, atol=0.51)
    rescaled = read_film(dicom_bytes(make_dicom(RAMP, RescaleSlope=-1, RescaleIntercept=4095)))
    np.testing.assert_array_equal(rescaled, 255 - plain)  # a negative slope flips the values: modality LUT ran


@pytest.mark.filterwarnings("ignore:Expected explicit VR")
def test_dicom_without_magic_by_suffix(tmp_path: Path) -> None:
    """Old files without the 128-byte preamble and 'DICM' are read when named .dcm, and only then."""
    raw = dicom_bytes(make_dicom(RAMP), file_format=False)
    assert raw[128:132] != b"DICM"
    path = tmp_path / "old.dcm"
    path.write_bytes(raw)
    np.testing.assert_array_equal(read_film(path), read_film(dicom_bytes(make_dicom(RAMP))))
    refused(raw, "not a PNG, JPEG or DICOM")


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "liver_1frame.dcm"]
)
def test_pydicom_gray_files(name: str) -> None:
    path = get_testdata_file(name)
    got = read_film(path)
    ds = pydicom.dcmread(path)
    assert got.dtype == np.uint8 and got.shape == (ds.Rows, ds.Columns)
    assert got.max() == 255 and got.std() > 10  # a film, not a flat or clipped image
    np.testing.assert_array_equal(read_film(Path(path).read_bytes()), got)


def test_pydicom_multiframe_reads_first_frame() -> None:
    path = get_testdata_file("rtdose.dcm")  # 15 frames of 10 x 10
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == 15
    first = pixel_array(ds, index=0).astype(float)
    got = read_film(path)
    assert got.shape == (10, 10)
    expected = (first - first.min()) / (first.max() - first.min()) * 255  # no VOI: stretched min..max
    np.testing.assert_allclose(got, expected, atol=0.51)


@pytest.mark.parametrize("name", ["SC_rgb_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_palette.dcm"])
def test_pydicom_colour_files_become_gray(name: str) -> None:
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    got = read_film(path)
    assert got.shape == (ds.Rows, ds.Columns) and got.max() == 255 and got.std() > 10


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the damaged files
def test_dicom_without_pixels_and_bombs() -> None:
    refused(get_testdata_file("test-SR.dcm"), "without pixel data")
    no_pixels = make_dicom(RAMP)
    del no_pixels.PixelData
    refused(dicom_bytes(no_pixels), "without pixel data")
    huge = make_dicom(RAMP)
    huge.Rows = huge.Columns = 60_000  # claims 3.6 GP; PixelData is 1 kB: refused before decoding
    assert "60000 x 60000" in refused(dicom_bytes(huge), "MP limit")
    refused(get_testdata_file("MR_truncated.dcm"), "truncated DICOM")
    refused(b"\0" * 128 + b"DICM" + b"\x02\x00garbage", "DICOM")


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) for m in ("pylibjpeg", "gdcm", "jpeg_ls")), reason="a JPEG-LS decoder is installed"
)
def test_dicom_compression_without_decoder_names_syntax_and_fix() -> None:
    message = refused(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), "cannot be decoded")
    assert "JPEG-LS Lossless" in message and "pip install pylibjpeg" in message


# --------------------------------------------------------------------------------------------------
# Listing films for predict
# --------------------------------------------------------------------------------------------------


def test_list_films(tmp_path: Path) -> None:
    png = png_bytes(Image.fromarray(GRAY))
    dcm = dicom_bytes(make_dicom(RAMP))
    files = {
        "b.png": png,
        "A.JPG": png,
        "sub/c.dcm": dcm,
        "sub/deeper/1.2.840.113619.2.55.3": dcm,  # PACS-style UID name: found by its DICM marker
        "sub/IM0001": dcm,
        "sub/DICOMDIR": dcm,  # an index, not a film
        "notes.txt": b"not a film",
        ".hidden.png": png,
        ".cache/x.png": png,
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    found = list_films([tmp_path])
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == ["A.JPG", "b.png", "sub/IM0001", "sub/c.dcm", "sub/deeper/1.2.840.113619.2.55.3"]
    # a file named on the command line is always listed (the reader says why it cannot read it); no duplicates
    again = list_films([tmp_path / "notes.txt", tmp_path, tmp_path / "b.png"])
    assert again[0] == tmp_path / "notes.txt" and len(again) == len(found) + 1
    assert all(read_film(p).ndim == 2 for p in found)
    with pytest.raises(UserError, match="does not exist"):
        list_films([tmp_path / "nope"])
