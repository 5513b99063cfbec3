"""Drive `cxr14 serve`'s page in headless Chromium: upload a film, wait for the findings and the heatmap, take
screenshots. Also makes the README's docs/serve.png.

    python scripts/screenshot_serve.py --checkpoint runs/demo-*/best_model.pth --film demo_data/images/X.png
    python scripts/screenshot_serve.py --checkpoint ... --film ... --out shot.png --width 390 --height 844

The server runs in this process on a free port of 127.0.0.1 (`cxr14.using.serve.runner.in_thread`: the real uvicorn
and sockets). Chromium and its offline flags are screenshot_report.py's. tests/test_serve_browser.py uses
`drive_page` from here, so the test and the README picture see the page the same way.
"""

from __future__ import annotations

import argparse
import base64
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/ is not a package
import screenshot_report  # noqa: E402

WAIT_MS = 30_000


def browser_settings() -> ModuleType:
    """screenshot_report.py, its sibling: where Chromium is and the flags it runs with."""
    return screenshot_report


@dataclass
class Visit:
    """What the browser saw at each viewport (width, height), after the film was scored and its heatmap shown."""

    order: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # findings (or API paths) as listed
    heatmap_of: dict[tuple[int, int], str] = field(default_factory=dict)  # the finding whose heatmap is shown
    picture: dict[tuple[int, int], str] = field(default_factory=dict)  # the film's src: blob (as sent) or data
    keyboard_heatmap: str | None = None  # the heatmap shown after Tab to the 2nd finding and Enter
    screenshots: dict[tuple[int, int], bytes] = field(default_factory=dict)
    scroll_width: dict[tuple[int, int], int] = field(default_factory=dict)
    refusal: str | None = None  # the status line shown for the refused file
    errors: list[str] = field(default_factory=list)  # console errors, page errors, failed requests
    refusals_logged: list[str] = field(default_factory=list)  # Chromium's console line for the refused upload
    expecting_refusal: bool = False
    elsewhere: list[str] = field(default_factory=list)  # requests to anything but the server


def drive_page(
    url: str, films: list[Path], viewports: list[tuple[int, int]], full_page: bool = False, bad: Path | None = None
) -> Visit:
    """Open the page at `url` at each viewport, give it that viewport's film (films[i] at viewports[i]) and wait
    for the findings list and the first heatmap. The first film is chosen with the file input, the others are
    dropped on the drop zone (a drop event carrying the file, as a drag from the desktop delivers it). On the
    first page, Tab and Enter then choose the second finding, and `bad` (a file the server refuses) is chosen."""
    from playwright.sync_api import sync_playwright

    shots = browser_settings()
    seen = Visit()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(shots.CHROMIUM), args=list(shots.CHROMIUM_ARGS))
        try:
            for i, (film, size) in enumerate(zip(films, viewports, strict=True)):
                page = browser.new_page(viewport={"width": size[0], "height": size[1]})
                _watch(page, url, seen)
                page.goto(url, wait_until="load")
                _score(page, film, size, full_page, seen, drop=i > 0)
                if i == 0:
                    seen.keyboard_heatmap = _by_keyboard(page, seen.order[size][1])
                    if bad is not None:
                        seen.refusal = _refused(page, bad, seen)
                page.close()
        finally:
            browser.close()
    return seen


def _score(page, film: Path, size: tuple[int, int], full_page: bool, seen: Visit, drop: bool) -> None:
    """Give the page one film and record what it shows once the findings and the first heatmap are there."""
    if drop:
        _drop(page, film)
    else:
        page.set_input_files("#file", str(film))
    page.wait_for_selector("#findings button", timeout=WAIT_MS)
    page.wait_for_selector("#viewer[data-cam]", timeout=WAIT_MS)
    seen.order[size] = page.eval_on_selector_all("#findings button", "bs => bs.map(b => b.dataset.finding)")
    seen.heatmap_of[size] = page.get_attribute("#viewer", "data-cam")
    seen.picture[size] = page.evaluate("document.getElementById('picture').src.split(':')[0]")
    seen.scroll_width[size] = int(page.evaluate("document.documentElement.scrollWidth"))
    seen.screenshots[size] = page.screenshot(full_page=full_page)


def _refused(page, bad: Path, seen: Visit) -> str:
    """Choose a file the server refuses; return the status line the page shows (the reason, in one line)."""
    seen.expecting_refusal = True  # Chromium logs the 4xx answer as a console error: expected here
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error", timeout=WAIT_MS)
    seen.expecting_refusal = False
    return page.inner_text("#status")


def unusual_banners(url: str, films: list[Path]) -> dict[str, tuple[bool, str, bool]]:
    """Per film (by name): whether the page shows its "not like the training films" banner, the banner's text,
    and whether the findings are greyed. Each film is chosen with the file input on a fresh desktop page."""
    from playwright.sync_api import sync_playwright

    shots = browser_settings()
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(shots.CHROMIUM), args=list(shots.CHROMIUM_ARGS))
        try:
            for film in films:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url, wait_until="load")
                page.set_input_files("#file", str(film))
                page.wait_for_selector("#findings button", timeout=WAIT_MS)
                shown = page.is_visible("#unusual")
                text = page.inner_text("#unusual") if shown else ""
                greyed = page.eval_on_selector("#findings", "f => f.classList.contains('greyed')")
                out[film.name] = (shown, text, greyed)
                page.close()
        finally:
            browser.close()
    return out


def visit_docs(url: str) -> Visit:
    """Open /docs (Swagger UI) and wait until it has laid out the API's operations from /openapi.json."""
    from playwright.sync_api import sync_playwright

    shots = browser_settings()
    seen = Visit()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(shots.CHROMIUM), args=list(shots.CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _watch(page, url, seen)
            page.goto(url.rstrip("/") + "/docs", wait_until="load")
            page.wait_for_selector(".opblock", timeout=WAIT_MS)
            seen.order[(1280, 900)] = page.eval_on_selector_all(
                ".opblock-summary-path", "ps => ps.map(p => p.innerText)"
            )
        finally:
            browser.close()
    return seen


def _watch(page, url: str, seen: Visit) -> None:
    def console(msg) -> None:
        if msg.type != "error":
            return
        expected = seen.expecting_refusal and "the server responded with a status of 4" in msg.text
        (seen.refusals_logged if expected else seen.errors).append(f"console: {msg.text}")

    page.on("console", console)
    page.on("pageerror", lambda err: seen.errors.append(f"page error: {err}"))
    page.on("requestfailed", lambda req: seen.errors.append(f"request failed: {req.url[:80]}"))
    local = url.rstrip("/") + "/"
    page.on("request", lambda req: req.url.startswith((local, "data:", "blob:")) or seen.elsewhere.append(req.url))


def _drop(page, film: Path) -> None:
    page.evaluate(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], name));
            const zone = document.getElementById("drop");
            for (const kind of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(kind, { dataTransfer: data, bubbles: true, cancelable: true }));
            }
        }""",
        [film.name, base64.b64encode(film.read_bytes()).decode("ascii")],
    )


def _by_keyboard(page, finding: str) -> str | None:
    """Tab from the file input to the button of `finding`, press Enter, and return the heatmap then shown."""
    page.focus("#file")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.finding") == finding:
            page.keyboard.press("Enter")
            page.wait_for_selector(f'#viewer[data-cam="{finding}"]', timeout=WAIT_MS)
            return page.get_attribute("#viewer", "data-cam")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a best_model.pth")
    parser.add_argument("--film", type=Path, required=True, help="the PNG, JPEG or DICOM film to upload")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "serve.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--full_page", action="store_true", help="the whole page, not just the first screen")
    args = parser.parse_args(argv)
    if not browser_settings().CHROMIUM.is_file():
        print("Chromium not installed: `apt-get install chromium` (scripts/setup does it as root)", file=sys.stderr)
        return 2
    from cxr14.config import ServeConfig
    from cxr14.model.loading import load_model
    from cxr14.using.serve.app import create_app
    from cxr14.using.serve.runner import in_thread

    app = create_app(load_model(args.checkpoint, "cpu"), ServeConfig(checkpoint=args.checkpoint))
    size = (args.width, args.height)
    with in_thread(app) as url:
        seen = drive_page(url, [args.film], [size], args.full_page)
    for line in seen.errors + [f"request elsewhere: {u}" for u in seen.elsewhere]:
        print(line, file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(seen.screenshots[size])
    print(f"{args.out}: {size[0]} px wide; top finding {seen.order[size][0]}, heatmap of {seen.heatmap_of[size]}")
    return 1 if seen.errors or seen.elsewhere else 0


if __name__ == "__main__":
    raise SystemExit(main())
