"""Open a report.html in headless Chromium: screenshots, console errors. Also makes the README's docs/report.png.

    python scripts/screenshot_report.py runs/demo-*/report.html                 # -> docs/report.png (1280 wide)
    python scripts/screenshot_report.py REPORT --out shot.png --width 390 --height 844 --full_page

Needs Playwright for Python and a Chromium (`apt-get install chromium`; scripts/setup does it as root). The
flags keep Chromium off the network: without --disable-background-networking and --disable-component-update
it calls Google's hosts at start, which a sandbox without network refuses. tests/test_report.py uses
`render_page` from here, so the test and the README picture see the page the same way.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Rendered:
    """What the browser saw: per viewport (width, height) a PNG and the page's width; every console or page error."""

    screenshots: dict[tuple[int, int], bytes] = field(default_factory=dict)
    scroll_width: dict[tuple[int, int], int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    page_height: int = 0


def render_page(html: Path, viewports: list[tuple[int, int]], full_page: bool = False) -> Rendered:
    """Load `html` from disk in headless Chromium at each viewport and take a screenshot (the top, or all of it)."""
    from playwright.sync_api import sync_playwright

    out = Rendered()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            for width, height in viewports:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.on("console", lambda msg: msg.type == "error" and out.errors.append(f"console: {msg.text}"))
                page.on("pageerror", lambda err: out.errors.append(f"page error: {err}"))
                page.on("requestfailed", lambda req: out.errors.append(f"request failed: {req.url[:80]}"))
                page.goto(html.resolve().as_uri(), wait_until="load")
                out.page_height = max(out.page_height, int(page.evaluate("document.documentElement.scrollHeight")))
                out.scroll_width[(width, height)] = int(page.evaluate("document.documentElement.scrollWidth"))
                out.screenshots[(width, height)] = page.screenshot(full_page=full_page)
                page.close()
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a report.html, or the evaluation folder holding one")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--full_page", action="store_true", help="the whole page, not just the first screen")
    args = parser.parse_args(argv)
    html = args.report / "report.html" if args.report.is_dir() else args.report
    if not html.is_file() or not CHROMIUM.is_file():
        print(f"need {html} and {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    seen = render_page(html, [(args.width, args.height)], args.full_page)
    for line in seen.errors:
        print(line, file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(seen.screenshots[(args.width, args.height)])
    print(f"{args.out}: {args.width} px wide, from {html}")
    return 1 if seen.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
