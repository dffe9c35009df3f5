"""Screenshots of the report page for the docs: `python -m tests.browser.screenshot [DIR]`.

Serves the synthetic 1,000-node x 200-image plan of `bench.report_scale` through the real
report server and photographs, in headless Chromium, the top of the page and one node found
through the form. Writes DIR/report.png and DIR/report-node.png (default docs/img).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.report_scale import serve_plan, synthetic_plan
from tests.browser.browser import WIDTH, browser

ROOT = Path(__file__).resolve().parents[2]
HEIGHT = 1180


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with serve_plan(synthetic_plan(1000, 200)) as url, browser() as context:
        page = context.new_page()
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        page.goto(f"{url}/")
        page.locator("#failures tr.failure summary").first.click()
        page.screenshot(path=str(out / "report.png"))
        page.goto(f"{url}/?node=cpu-0417")
        page.locator("form.find").evaluate("form => window.scrollTo(0, form.offsetTop - 12)")
        page.screenshot(path=str(out / "report-node.png"))
    print(f"wrote {out / 'report.png'} and {out / 'report-node.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
