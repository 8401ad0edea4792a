"""The README's dashboard pictures, made again: `make screenshots` (or
`python -m tests.screenshots`).

An engine on the embedded default in a temporary folder receives sample registrations and
lab results over MLLP (invented people, invented ID card numbers), and headless Chromium
signs in through the login page as an operator and photographs the overview and a message
page as she sees them, in Chinese.
"""

from __future__ import annotations

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tests' own helpers

from dashboard_browser import add_user, browser, monitored, serving, signed_in

from monitors.web.access import Role
from support import REPO, RunningEngine, adt, oru, scalar, wait_until, write_routes

OUT = REPO / "docs" / "images"
PEOPLE = [  # (HIS id, name, ID card): invented
    ("0010031207", "王小红", "11010519491231002X"),
    ("0010031208", "李静", "110101199003074477"),
    ("0010031209", "陈丽华", "440106198801012345"),
]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_routes(folder, database=f"sqlite:///{folder / 'engine.db'}")
        with RunningEngine(config) as engine, monitored(engine), serving(engine.settings) as base:
            _send_samples(engine)
            add_user(engine.settings, "王芳", Role.operator)
            with browser() as chromium:
                page = signed_in(chromium, base, "王芳", viewport={"width": 1280, "height": 760})
                page.goto(base + "/")
                page.screenshot(path=str(OUT / "dashboard-overview.png"), full_page=True)
                page.goto(base + "/messages?identifier=" + PEOPLE[0][2])
                page.locator("#messages tbody tr[data-message] a").first.click()
                page.wait_for_selector("#raw")
                page.screenshot(path=str(OUT / "dashboard-message.png"), full_page=True)
    print(f"written: {OUT / 'dashboard-overview.png'}, {OUT / 'dashboard-message.png'}")
    return 0


def _send_samples(engine: RunningEngine) -> None:
    samples = [
        adt(f"REG-{i}", his, name=name, extra_ids=f"~{card}^^^^ID")
        for i, (his, name, card) in enumerate(PEOPLE)
    ]
    samples += [oru(f"LAB-{i}", f"F{i}", his) for i, (his, _, _) in enumerate(PEOPLE)]
    with ThreadPoolExecutor(1) as pool:
        pool.submit(engine.send, samples).result(60)
    wait_until(lambda: scalar(engine.journal, "select count(*) from journal_deliveries") >= len(samples), 30)


if __name__ == "__main__":
    raise SystemExit(main())
