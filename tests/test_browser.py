"""The fill-mask page in a real headless browser: Debian's chromium driven by playwright.

The server is the real `mlmtune serve` in a subprocess on a free loopback port (tiny_bert tuned,
tiny_encoder as the base). Never downloads a browser: without /usr/bin/chromium or the playwright
package the test is skipped and says why.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.browser


def _sync_playwright():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (as root: apt-get install chromium, or make browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install 'mlmtune[test]'); "
                    "it drives /usr/bin/chromium, no browser download needed")
    return sync_playwright


@pytest.fixture
def server_url(tiny_bert, tiny_encoder, tmp_path):
    """`python -m mlmtune serve --port 0` in a subprocess; its printed URL, once /health answers."""
    from mlmtune.serve import spawn, stop

    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        try:
            proc, url = spawn(tiny_bert, tiny_encoder, stderr=stderr, timeout=120, env={"HF_HUB_OFFLINE": "1"})
        except RuntimeError:
            pytest.fail(f"mlmtune serve printed no URL; its stderr:\n{log.read_text()[-2000:]}")
        try:
            assert httpx.get(url + "health", timeout=30).json()["status"] == "ok"
            yield url
        finally:
            stop(proc)


def test_page_fills_both_columns(server_url, tmp_path):
    sync_playwright = _sync_playwright()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type == "error" and "status of 422" not in msg.text else None)  # 422: shown on purpose
            page.goto(server_url)

            tuned, base = page.locator('[data-role="tuned"]'), page.locator('[data-role="base"]')
            tuned.wait_for()  # the columns appear from /health before any request
            base.wait_for()
            assert page.get_by_label("Sentence with [MASK]").is_visible()  # the input has an accessible label

            # A text without a mask: the server's 422 message is shown inline.
            page.get_by_label("Sentence with [MASK]").fill("The cat is happy.")
            page.keyboard.press("Enter")
            error = page.locator("#error")
            error.wait_for(state="visible")
            assert "no mask" in error.inner_text()

            # The sentence of the issue, submitted with Enter.
            page.get_by_label("Sentence with [MASK]").fill("The [MASK] is happy.")
            page.keyboard.press("Enter")
            tuned.locator(".prediction").nth(4).wait_for()
            base.locator(".prediction").nth(4).wait_for()
            assert error.is_hidden()
            for column in (tuned, base):
                assert column.locator(".prediction").count() == 5  # top 5 by default
                words = [w.strip() for w in column.locator(".prediction .token").all_inner_texts()]
                assert all(words), words
                scores = column.locator(".prediction .score").all_inner_texts()
                assert all(s.strip().endswith("%") for s in scores), scores
            assert base.locator(".badge").inner_text() == "untrained head"  # tiny_encoder has no MLM head
            assert tuned.locator(".badge").count() == 0
            # side by side, base on the left (before -> after)
            base_box, tuned_box = base.bounding_box(), tuned.bounding_box()
            assert base_box["x"] + base_box["width"] <= tuned_box["x"] + 1
            assert abs(base_box["y"] - tuned_box["y"]) < 2

            shot = tmp_path / "serve.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            (REPO / "test-output").mkdir(exist_ok=True)
            shutil.copyfile(shot, REPO / "test-output" / "serve.png")

            # An example with two masks: clicking it submits; each column shows two ranked lists.
            page.get_by_role("button", name="The prime [MASK] met European [MASK] in Brussels.").click()
            tuned.locator(".predictions").nth(1).wait_for()
            assert tuned.locator(".predictions").count() == 2 and base.locator(".predictions").count() == 2
            assert "Brussels" in tuned.locator(".filled").inner_text()

            # Narrow screens stack the columns.
            page.set_viewport_size({"width": 420, "height": 900})
            base_box, tuned_box = base.bounding_box(), tuned.bounding_box()
            assert tuned_box["y"] >= base_box["y"] + base_box["height"] - 1
            assert not problems, problems
        finally:
            browser.close()
