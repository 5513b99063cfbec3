"""`cxr14 serve`'s page in a real headless Chromium: upload a phantom film with the file input, wait for the
findings list and the heatmap, and check the top finding against `cxr14 predict` on the same file."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image, ImageStat

from cxr14.inference import LoadedModel
from tests.conftest import REPO

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'cxr14[serve]'")
pytest_plugins = ("tests.serve_fixtures",)
if TYPE_CHECKING:
    from tests.serve_fixtures import PredictRun

DESKTOP, PHONE = (1280, 900), (390, 844)


def load_driver():
    """scripts/screenshot_serve.py, which also makes the README's picture."""
    if "screenshot_serve" not in sys.modules:
        spec = importlib.util.spec_from_file_location("screenshot_serve", REPO / "scripts" / "screenshot_serve.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules["screenshot_serve"]


def test_upload_shows_findings_and_heatmap_like_predict(
    serve_model: LoadedModel, serve_checkpoint: Path, serve_films: Path, predict_run: PredictRun
) -> None:
    driver = load_driver()
    if not driver.browser_settings().CHROMIUM.is_file():
        pytest.skip("Chromium not installed: `apt-get install chromium` (scripts/setup does it as root)")
    pytest.importorskip("playwright.sync_api", reason="Playwright not installed: pip install playwright")
    from cxr14.config import ServeConfig
    from cxr14.serve.app import create_app
    from cxr14.serve.runner import in_thread

    film = serve_films / "film.png"
    app = create_app(serve_model, ServeConfig(checkpoint=serve_checkpoint))
    with in_thread(app) as url:
        seen = driver.drive_page(url, film, [DESKTOP, PHONE])
    probs = predict_run.rows()["film.png"]["probabilities"]  # `cxr14 predict --json film.png`
    top = max(probs, key=probs.get)

    assert seen.errors == [] and seen.elsewhere == []
    for size in (DESKTOP, PHONE):
        assert seen.order[size] == sorted(probs, key=probs.get, reverse=True)  # all 14, as predict ranks them
        assert seen.order[size][0] == top
        assert seen.heatmap_of[size] == top  # the top finding's heatmap is shown first
        assert seen.scroll_width[size] <= size[0]  # nothing wider than the screen, phone included
        shot = Image.open(io.BytesIO(seen.screenshots[size])).convert("L")
        assert shot.size == size and ImageStat.Stat(shot).stddev[0] > 20  # a laid-out page, not a blank one
    assert seen.keyboard_heatmap == seen.order[DESKTOP][1]  # Tab to the second finding, Enter: its heatmap
