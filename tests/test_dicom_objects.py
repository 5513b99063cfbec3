"""`cxr14 dicom predict` through the real CLI: NEMA's real chest film (RG1) in, an SR, heatmap SCs and a GSPS out
that dciodvfy (dicom3tools) passes, with the same probabilities as `cxr14 predict`; deterministic UIDs; and every
object that is not a frontal chest film skipped with its reason, by UID, without a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom", reason="the dicom extra: pip install 'cxr14[dicom]' (scripts/setup installs it)")
data_store = pytest.importorskip(
    "data_store", reason="NEMA's real DICOM films come from the pydicom-data package: pip install pydicom-data "
    "(the test extra; scripts/setup installs it)",
)  # fmt: skip
NEMA = Path(data_store.__file__).parent / "data"
RG1 = NEMA / "RG1_UNCR.dcm"


def dicom_predict(model: Path, out: Path, *paths: Path, outputs: str = "sr,sc,gsps") -> subprocess.CompletedProcess:
    return run_cli("-m", "cxr14", "dicom", "predict", *map(str, paths), "--checkpoint", str(model), "--out", str(out),
                   "--outputs", outputs, "--device", "cpu")  # fmt: skip


@pytest.fixture(scope="module")
def written(phantom_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """RG1 through `dicom predict` twice (two folders) and through `predict --json` once."""
    model = phantom_run[0] / "best_model.pth"
    root = tmp_path_factory.mktemp("dicom_objects")
    runs = [dicom_predict(model, root / f"out{k}", RG1) for k in (1, 2)]
    for done in runs:
        assert done.returncode == 0, done.stderr[-3000:]
    plain = run_cli("-m", "cxr14", "predict", str(RG1), "--checkpoint", str(model), "--json", "--device", "cpu",
                    "--no-progress")  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-3000:]
    uid = str(pydicom.dcmread(RG1, stop_before_pixels=True).SOPInstanceUID)
    return {"folders": [root / "out1" / uid, root / "out2" / uid], "row": json.loads(plain.stdout),
            "stdout": runs[0].stdout, "stderr": runs[0].stderr}  # fmt: skip


def test_rg1_gets_an_sr_with_predicts_probabilities(written: dict) -> None:
    from cxr14.using.dicom.sr import read_probabilities

    folder = written["folders"][0]
    assert sorted(p.name for p in folder.iterdir()) == ["gsps.dcm", "sc-1.dcm", "sc-2.dcm", "sc-3.dcm", "sr.dcm"]
    assert "wrote sr.dcm, sc-1.dcm, sc-2.dcm, sc-3.dcm, gsps.dcm" in written["stdout"]
    sr = pydicom.dcmread(folder / "sr.dcm")
    stated = read_probabilities(sr)
    expected = written["row"]["probabilities"]
    assert stated.keys() == expected.keys()
    assert max(abs(stated[k] - expected[k]) for k in expected) <= 1e-5
    assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"
    assert "CompressedSamples" not in written["stdout"] + written["stderr"]  # the patient's name is never logged


def test_results_join_the_study_in_new_series_with_the_same_uids_each_run(written: dict) -> None:
    source = pydicom.dcmread(RG1, stop_before_pixels=True)
    first, second = ({p.name: pydicom.dcmread(p) for p in f.iterdir()} for f in written["folders"])
    for name, ds in first.items():
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.SOPInstanceUID == second[name].SOPInstanceUID  # a retry replaces, never duplicates
    assert len({ds.SOPInstanceUID for ds in first.values()}) == len(first)
    sc = first["sc-1.dcm"]
    assert sc.PhotometricInterpretation == "RGB" and max(sc.Rows, sc.Columns) <= 1024
    assert sc.BurnedInAnnotation == "YES" and "NOT FOR DIAGNOSTIC USE" in sc.SeriesDescription
    band = sc.pixel_array[: max(14, round(sc.Rows * 0.06))]  # the caption burnt in at the top: white on black
    assert np.median(band) == 0 and (band == 255).all(axis=-1).sum() > 50


def test_jpeg_2000_lossless_gives_the_same_sr(written: dict, phantom_run: tuple[Path, Path], tmp_path: Path) -> None:
    """RG1 stored as JPEG 2000 lossless: decoded by the pixel plugins, the same probabilities as uncompressed."""
    from cxr14.using.dicom.sr import read_probabilities

    j2k = NEMA / "RG1_J2KR.dcm"
    done = dicom_predict(phantom_run[0] / "best_model.pth", tmp_path, j2k, outputs="sr")
    assert done.returncode == 0 and "wrote sr.dcm" in done.stdout, done.stdout + done.stderr[-2000:]
    uid = str(pydicom.dcmread(j2k, stop_before_pixels=True).SOPInstanceUID)
    stated = read_probabilities(pydicom.dcmread(tmp_path / uid / "sr.dcm"))
    expected = written["row"]["probabilities"]
    assert max(abs(stated[k] - expected[k]) for k in expected) <= 1e-5


def test_every_object_passes_dciodvfy(written: dict) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not found: install dicom3tools (scripts/setup does, as root with apt-get)")
    for path in sorted(written["folders"][0].iterdir()):
        done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        lines = (done.stdout + done.stderr).splitlines()
        print(path.name, *[line for line in lines if line.startswith("Warning")], sep="\n  ")
        errors = [line for line in lines if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"


def phantom_dicom(path: Path, view: str = "PA", **extra: str) -> Path:
    """A phantom DX film with the header a PACS's film has (study, series, view, body part)."""
    from pydicom.uid import generate_uid

    from cxr14.data.phantom.writer import dicom_dataset

    ds = dicom_dataset(np.random.default_rng(0).integers(0, 4096, (64, 64)).astype(np.uint16))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.ViewPosition, ds.BodyPartExamined = "P1", "Doe^Jane", view, "CHEST"
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_what_is_not_a_frontal_chest_film_is_skipped_with_its_reason(phantom_run: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:  # fmt: skip
    from cxr14.using.dicom.uids import device_uid

    films = tmp_path / "in"
    films.mkdir()
    lateral = phantom_dicom(films / "lateral.dcm", view="LL")
    ours = phantom_dicom(films / "ours.dcm", DeviceUID=device_uid("0" * 64))
    report = phantom_dicom(films / "report.dcm", Modality="SR")
    (films / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    truncated = phantom_dicom(films / "truncated.dcm")
    truncated.write_bytes(truncated.read_bytes()[:-3000])  # the header whole, the pixel data cut short
    done = dicom_predict(phantom_run[0] / "best_model.pth", tmp_path / "out", NEMA / "RG3_UNCR.dcm", films)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6 and all(": skipped: " in line for line in lines), done.stdout
    uid = {p: str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
           for p in (lateral, ours, report, truncated)}  # fmt: skip
    assert f"{uid[lateral]}: skipped: lateral view (ViewPosition LL)" in lines
    assert f"{uid[ours]}: skipped: cxr14's own result (our device UID)" in lines
    assert f"{uid[report]}: skipped: not a radiograph (Modality SR)" in lines
    assert any(line.endswith("not a chest film (BodyPartExamined EXTREMITY)") for line in lines)
    assert any(line.startswith(f"{uid[truncated]}: skipped: ") and "truncated DICOM file" in line for line in lines)
    assert any(line.startswith(f"{films / 'garbage.dcm'}: skipped: ") for line in lines)  # no UID to name it by
    assert "Doe^Jane" not in done.stdout + done.stderr and "6 file(s) skipped" in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_film_without_patient_or_study_details_still_gets_valid_results(phantom_run: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:  # fmt: skip
    """Type 2 attributes (patient name, id, birth date, accession...) absent, as test tools and some gateways send
    films: the results carry them empty, and still validate."""
    from cxr14.data.phantom.writer import dicom_dataset
    from cxr14.using.dicom.select import COPIED_TYPE2

    ds = dicom_dataset(np.random.default_rng(1).integers(0, 4096, (64, 64)).astype(np.uint16))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.ViewPosition = "AP"
    assert not any(k in ds for k in COPIED_TYPE2)
    ds.save_as(tmp_path / "bare.dcm", enforce_file_format=True)
    done = dicom_predict(phantom_run[0] / "best_model.pth", tmp_path / "out", tmp_path / "bare.dcm", outputs="sr,sc")
    assert done.returncode == 0 and "wrote sr.dcm, sc-1.dcm" in done.stdout, done.stdout + done.stderr[-2000:]
    written = sorted((tmp_path / "out" / str(ds.SOPInstanceUID)).iterdir())
    for path in written:
        result = pydicom.dcmread(path)
        assert result.PatientID == "" and result.AccessionNumber == ""
        assert result.StudyInstanceUID == ds.StudyInstanceUID
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not found: install dicom3tools (scripts/setup does, as root with apt-get)")
    for path in written:
        done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"


def test_an_ensemble_goes_through_the_same_loader(phantom_run: tuple[Path, Path], second_run: Path,
                                                 tmp_path: Path) -> None:  # fmt: skip
    """`--checkpoint A,B` (an ensemble, as evaluate and predict take it): its SR states the ensemble's
    probabilities, the ones `cxr14 predict` gives with the same two models."""
    from cxr14.using.dicom.sr import read_probabilities

    models = f"{phantom_run[0] / 'best_model.pth'},{second_run / 'best_model.pth'}"
    done = run_cli("-m", "cxr14", "dicom", "predict", str(RG1), "--checkpoint", models, "--out", str(tmp_path),
                   "--outputs", "sr", "--device", "cpu")  # fmt: skip
    assert done.returncode == 0 and "wrote sr.dcm" in done.stdout, done.stdout + done.stderr[-2000:]
    plain = run_cli("-m", "cxr14", "predict", str(RG1), "--checkpoint", models, "--json", "--device", "cpu",
                    "--no-progress")  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-2000:]
    expected = json.loads(plain.stdout)["probabilities"]
    uid = str(pydicom.dcmread(RG1, stop_before_pixels=True).SOPInstanceUID)
    stated = read_probabilities(pydicom.dcmread(tmp_path / uid / "sr.dcm"))
    assert stated.keys() == expected.keys()
    assert max(abs(stated[k] - expected[k]) for k in expected) <= 1e-5


def test_which_films_are_scored() -> None:
    """The header rules alone: the view (unless views='all'), the SOP class, frames, our own results."""
    from pydicom.dataset import Dataset

    from cxr14.using.dicom.select import DX_FOR_PROCESSING, why_skip
    from cxr14.using.dicom.uids import device_uid, is_own_device

    def film(**kw: object) -> Dataset:
        ds = Dataset()
        ds.Modality, ds.SOPClassUID, ds.ViewPosition = "DX", "1.2.840.10008.5.1.4.1.1.1.1", "AP"
        ds.StudyInstanceUID, ds.SOPInstanceUID = "1.2.3", "1.2.3.4"
        for k, v in kw.items():
            setattr(ds, k, v)
        return ds

    assert why_skip(film()) is None
    assert why_skip(film(ViewPosition="")) == "not a frontal view (ViewPosition empty; --views all scores it)"
    assert why_skip(film(ViewPosition="LL"), views="all") is None
    assert why_skip(film(SOPClassUID=DX_FOR_PROCESSING)).startswith("a DX image For Processing")
    assert why_skip(film(NumberOfFrames=3)) == "multi-frame object (3 frames): a chest film is one frame"
    assert why_skip(film(Modality="SC")) == "not a radiograph (Modality SC)"
    assert why_skip(film(BodyPartExamined="THORAX")) is None
    assert is_own_device(device_uid("ab" * 32)) and not is_own_device("2.25.1234") and not is_own_device(None)


def test_readme_code_table_is_the_generated_one() -> None:
    from cxr14.using.dicom.codes import known_labels, markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown_table() in readme, "README's code table is stale: python -m cxr14.using.dicom.codes"
    assert {"Atelectasis", "Pleural Effusion", "Support Devices", "Nodule/Mass"} <= set(known_labels())
