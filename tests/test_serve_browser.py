"""`cxr14 serve`'s page in a real headless Chromium: upload a phantom film with the file input (and a DICOM by
drag and drop), wait for the findings list and the heatmap, and check the top finding against `cxr14 predict`
on the same file."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image, ImageStat

from cxr14.model.loading import LoadedModel
from tests.conftest import load_script

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'cxr14[serve]'")
pytest_plugins = ("tests.serve_fixtures",)
if TYPE_CHECKING:
    from tests.serve_fixtures import PredictRun

DESKTOP, PHONE = (1280, 900), (390, 844)


def test_upload_shows_findings_and_heatmap_like_predict(
    serve_model: LoadedModel, serve_checkpoint: Path, serve_films: Path, predict_run: PredictRun, tmp_path: Path
) -> None:
    driver = load_script("screenshot_serve")
    if not driver.browser_settings().CHROMIUM.is_file():
        pytest.skip("Chromium not installed: `apt-get install chromium` (scripts/setup does it as root)")
    pytest.importorskip("playwright.sync_api", reason="Playwright not installed: pip install playwright")
    from cxr14.config import ServeConfig
    from cxr14.using.serve.app import create_app
    from cxr14.using.serve.runner import in_thread

    app = create_app(serve_model, ServeConfig(checkpoint=serve_checkpoint))
    # The PNG chosen with the file input on a desktop; the DICOM dropped on the drop zone on a phone.
    films = {DESKTOP: serve_films / "film.png", PHONE: serve_films / "film.dcm"}
    notes = tmp_path / "notes.txt"
    notes.write_text("not a film\n")
    with in_thread(app) as url:
        seen = driver.drive_page(url, list(films.values()), list(films), bad=notes)
    rows = predict_run.rows()  # `cxr14 predict --json film.png film.dcm`

    assert seen.errors == [] and seen.elsewhere == []
    for size, film in films.items():
        probs = rows[film.name]["probabilities"]
        assert seen.order[size][0] == max(probs, key=probs.get)  # the top finding is predict's
        ranked = [probs[label] for label in seen.order[size]]  # all 14, most probable first (to predict's digits)
        assert sorted(seen.order[size]) == sorted(probs) and all(a >= b - 2e-6 for a, b in itertools.pairwise(ranked))
        assert seen.heatmap_of[size] == seen.order[size][0]  # the top finding's heatmap is shown first
        assert seen.scroll_width[size] <= size[0]  # nothing wider than the screen, phone included
        shot = Image.open(io.BytesIO(seen.screenshots[size])).convert("L")
        assert shot.size == size and ImageStat.Stat(shot).stddev[0] > 20  # a laid-out page, not a blank one
    assert seen.picture == {DESKTOP: "blob", PHONE: "data"}  # the PNG as uploaded; the DICOM as the server read it
    assert seen.keyboard_heatmap == seen.order[DESKTOP][1]  # Tab to the second finding, Enter: its heatmap
    assert seen.refusal == "notes.txt: not a PNG, JPEG or DICOM image: it looks like text"  # the reason, one line
    assert len(seen.refusals_logged) == 1 and "status of 415" in seen.refusals_logged[0]


def test_docs_page_needs_nothing_from_the_network(serve_model: LoadedModel, serve_checkpoint: Path) -> None:
    driver = load_script("screenshot_serve")
    if not driver.browser_settings().CHROMIUM.is_file():
        pytest.skip("Chromium not installed: `apt-get install chromium` (scripts/setup does it as root)")
    pytest.importorskip("fastapi_offline", reason="fastapi-offline not installed (Swagger UI's files for /docs): "
                        "pip install 'cxr14[serve]'")  # fmt: skip
    from cxr14.config import ServeConfig
    from cxr14.using.serve.app import create_app
    from cxr14.using.serve.runner import in_thread

    with in_thread(create_app(serve_model, ServeConfig(checkpoint=serve_checkpoint))) as url:
        seen = driver.visit_docs(url)
    assert seen.errors == [] and seen.elsewhere == []
    assert {"/api/predict", "/api/model", "/api/health"} <= set(seen.order[(1280, 900)])


def test_unusual_film_gets_a_banner_and_greyed_findings(
    serve_model: LoadedModel, serve_checkpoint: Path, serve_films: Path, tmp_path: Path
) -> None:
    driver = load_script("screenshot_serve")
    if not driver.browser_settings().CHROMIUM.is_file():
        pytest.skip("Chromium not installed: `apt-get install chromium` (scripts/setup does it as root)")
    pytest.importorskip("playwright.sync_api", reason="Playwright not installed: pip install playwright")
    from sklearn.datasets import load_sample_images

    from cxr14.config import ServeConfig
    from cxr14.using.serve.app import create_app
    from cxr14.using.serve.runner import in_thread

    photo = tmp_path / "photo.jpg"
    Image.fromarray(load_sample_images().images[0]).save(photo)
    real = Path(__file__).parent / "data" / "nih_real" / "00000002_000.png"  # a real film: not a phantom
    with in_thread(create_app(serve_model, ServeConfig(checkpoint=serve_checkpoint))) as url:
        seen = driver.unusual_banners(url, [serve_films / "film.png", photo, real])
    assert seen["film.png"] == (False, "", False)  # a phantom film: no banner, findings in colour
    for name, why in (("photo.jpg", "colour photograph"), (real.name, "unlike the films")):
        shown, text, greyed = seen[name]
        assert shown and greyed and "do not trust these numbers" in text and why in text, (name, text)
