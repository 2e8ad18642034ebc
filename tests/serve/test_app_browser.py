"""The fill-mask page in a real headless browser: Debian's chromium driven by playwright.

The server is the real `mlmtune serve` in a subprocess on a free loopback port (tiny_bert tuned,
tiny_encoder as the base). Never downloads a browser: without /usr/bin/chromium or the playwright
package the test is skipped and says why.
"""

from __future__ import annotations

import json
import re
import shutil

import httpx
import pytest
from helpers import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server_url(tiny_bert, tiny_encoder, tmp_path_factory):
    """`python -m mlmtune serve --port 0` in a subprocess; its printed URL, once /health answers."""
    from helpers import spawn, stop

    log = tmp_path_factory.mktemp("serve") / "serve.log"
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


def open_page(browser, url, problems, **options):
    page = browser.new_page(**options)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "status of 422" not in msg.text else None)  # 422: shown on purpose
    page.goto(url)
    page.locator('[data-role="tuned"]').wait_for()  # the columns appear from /health before any request
    page.locator('[data-role="base"]').wait_for()
    return page


def submit(page, text):
    page.get_by_label("Sentence with [MASK]").fill(text)
    page.keyboard.press("Enter")


def test_page_fills_both_columns(server_url, browser, tmp_path):
    problems: list[str] = []
    page = open_page(browser, server_url, problems, viewport={"width": 1200, "height": 900})
    tuned, base = page.locator('[data-role="tuned"]'), page.locator('[data-role="base"]')
    assert page.get_by_label("Sentence with [MASK]").is_visible()  # the input has an accessible label

    # A text without a mask: the server's 422 message is shown inline.
    submit(page, "The cat is happy.")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "no mask" in error.inner_text()

    # The sentence of the issue, submitted with Enter.
    submit(page, "The [MASK] is happy.")
    tuned.locator(".prediction").nth(4).wait_for()
    base.locator(".prediction").nth(4).wait_for()
    assert error.is_hidden()
    for column in (tuned, base):
        assert column.locator(".prediction").count() == 5  # top 5 by default
        words = [w.strip() for w in column.locator(".prediction .token").all_inner_texts()]
        assert all(words), words
        scores = column.locator(".prediction .score").all_inner_texts()
        assert all(s.strip().endswith("%") for s in scores), scores
    # tiny_encoder has no MLM head: shown as the head training starts from, warm-started (no run names it as
    # its base: from the built-in corpus' word counts), never as a random head's noise
    assert base.locator(".badge").inner_text() == "warm-started head"
    assert "warm-started with the word frequencies of bbc-news" in base.locator(".note").inner_text()
    # the JSON view: the request as curl and the API's answer, as the page received it
    page.locator("#json summary").click()
    answer = json.loads(page.locator("#json-answer").inner_text())
    assert [m["role"] for m in answer["models"]] == ["tuned", "base"] and answer["models"][1]["head"] == "warm"
    assert "curl -s" in page.locator("#json-request").inner_text() and '"top_k":5' in page.locator("#json-request").inner_text()
    assert tuned.locator(".badge").count() == 0
    # side by side, base on the left (before -> after)
    base_box, tuned_box = base.bounding_box(), tuned.bounding_box()
    assert base_box["x"] + base_box["width"] <= tuned_box["x"] + 1
    assert abs(base_box["y"] - tuned_box["y"]) < 2
    # the base card's note does not push its rows below the tuned card's
    assert base.locator(".note").is_visible()
    for rank in range(5):
        b, t = (c.locator(".prediction").nth(rank).bounding_box() for c in (base, tuned))
        assert abs(b["y"] - t["y"]) < 1, (rank, b, t)

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

    # An error after results clears them: no old predictions under the new message.
    submit(page, "No mask at all.")
    error.wait_for(state="visible")
    page.wait_for_function("document.querySelectorAll('.prediction').length === 0")
    assert page.locator(".placeholder").count() == 2 and page.locator("#legend").is_hidden()

    # Narrow screens stack the columns, the tuned one first.
    page.set_viewport_size({"width": 420, "height": 900})
    base_box, tuned_box = base.bounding_box(), tuned.bounding_box()
    assert base_box["y"] >= tuned_box["y"] + tuned_box["height"] - 1
    # a phone: every word whole (never "suspen…"), no sideways scrolling
    page.set_viewport_size({"width": 390, "height": 844})
    submit(page, "The [MASK] is happy.")
    base.locator(".prediction").nth(4).wait_for()
    for cell in page.locator(".prediction .token").all():
        assert cell.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), cell.inner_text()
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    page.screenshot(path=str(REPO / "test-output" / "serve-390.png"), full_page=True)
    assert not problems, problems


# --- an answer of known figures (the route stands in for the server's API; /health is the real one) ---

def prediction(token, score, token_str=None):
    return {"score": score, "token": token, "token_str": token_str or f"w{token}", "sequence": ""}


TEXT = "The prime [MASK] met European [MASK] in Brussels."
ANSWER = {"text": TEXT, "models": [
    {"name": "tuned", "role": "tuned", "grown_head": False, "masks": [
        [prediction(1, 0.40, "##s"), prediction(2, 0.20, "minister"), prediction(3, 0.04, "ministers")],
        [prediction(4, 0.30, "leaders"), prediction(5, 0.10, "officials"), prediction(6, 0.00005, "##ing")],
    ]},
    {"name": "base", "role": "base", "grown_head": True, "masks": [
        [prediction(2, 0.004, "minister"), prediction(7, 0.002, "time"), prediction(1, 0.001, "##s")],
        [prediction(8, 0.03, "union"), prediction(4, 0.02, "leaders"), prediction(5, 0.0005, "officials")],
    ]},
]}


def answered(page, body):
    page.route("**/v1/fill-mask", lambda route: route.fulfill(status=200, content_type="application/json",
                                                              body=json.dumps(body)))


def rows(column):
    """Per mask, per prediction: (token cell text, score text, change mark, bar width / track width)."""
    return column.evaluate("""col => [...col.querySelectorAll('ol.predictions')].map(ol =>
        [...ol.querySelectorAll('li.prediction')].map(li => [
            li.querySelector('.token').innerText, li.querySelector('.score').innerText,
            li.querySelector('.change').innerText,
            li.querySelector('.bar > span').getBoundingClientRect().width / li.querySelector('.bar').getBoundingClientRect().width]))""")


def test_bars_values_pieces_and_changes(server_url, browser):
    problems: list[str] = []
    page = open_page(browser, server_url, problems, viewport={"width": 1280, "height": 800}, locale="en-US")
    answered(page, ANSWER)
    submit(page, TEXT)
    tuned, base = page.locator('[data-role="tuned"]'), page.locator('[data-role="base"]')
    base.locator(".prediction").nth(5).wait_for()
    got = {role: rows(page.locator(f'[data-role="{role}"]')) for role in ("tuned", "base")}
    for model in ANSWER["models"]:
        column = got[model["role"]]
        top = max(p["score"] for mask in model["masks"] for p in mask)
        for mask, shown in zip(model["masks"], column):
            for p, (token, score, _, width) in zip(mask, shown):
                # bars relative to the column's top score (the best fills the track; 2 px at least)
                assert width == pytest.approx(p["score"] / top, abs=0.02), (model["role"], token, width)
                # the value printed, small ones with two significant digits
                expected = f"{p['score']:.1%}" if p["score"] >= 0.001 else f"{p['score'] * 100:.2g}%"
                assert score == expected, (score, p["score"])
    # a word piece is shown as a piece, never as "##s" in a list or a sentence
    texts = page.locator("#results").inner_text()
    assert "##" not in texts
    assert got["tuned"][0][0][0] == "…s" and got["tuned"][1][2][0] == "…ing"
    filled = tuned.locator(".filled")
    assert filled.inner_text().startswith("The primes met European leaders in Brussels")  # joined, not "prime ##s"
    assert filled.locator("mark.piece").inner_text() == "s"
    assert base.locator(".filled").inner_text().startswith("The prime minister met European union in")
    # what entered the top 3 with tuning, and what left it
    assert [[c for _, _, c, _ in mask] for mask in got["tuned"]] == [["", "", "NEW"], ["", "", "NEW"]]
    assert [[c for _, _, c, _ in mask] for mask in got["base"]] == [["", "OUT", ""], ["OUT", "", ""]]
    assert "entered the top" in page.locator("#legend").inner_text()
    # the base card's warning does not push its rows out of line with the tuned card's
    for rank in range(6):
        b, t = (c.locator(".prediction").nth(rank).bounding_box() for c in (base, tuned))
        assert abs(b["y"] - t["y"]) < 1, (rank, b, t)
    assert abs(base.locator(".filled").bounding_box()["y"] - filled.bounding_box()["y"]) < 1
    assert not problems, problems


def test_a_roberta_piece_is_a_piece(server_url, browser):
    """RoBERTa's "s" (no word-start space) continues the word before it, as "##s" does: the server says so in
    `pieces`. Before, the page wrote "The prime s met", and took the piece "s" for the base's word " s".
    A token of white space alone is drawn (␣, ⏎), not an empty cell."""
    problems: list[str] = []
    page = open_page(browser, server_url, problems, viewport={"width": 1280, "height": 800})
    answer = {"text": "The prime [MASK] met.", "models": [
        {"name": "tuned", "role": "tuned", "grown_head": False, "pieces": [[True, False]],
         "masks": [[prediction(1, 0.5, "s"), prediction(2, 0.2, " minister"), prediction(4, 0.1, "\n")]]},
        {"name": "base", "role": "base", "grown_head": False, "pieces": [[False, False, False]],
         "masks": [[prediction(3, 0.3, " s"), prediction(2, 0.1, " minister"), prediction(5, 0.05, " ")]]},
    ]}
    answered(page, answer)
    submit(page, answer["text"])
    tuned, base = page.locator('[data-role="tuned"]'), page.locator('[data-role="base"]')
    base.locator(".prediction").nth(1).wait_for()
    assert tuned.locator(".filled").inner_text().startswith("The primes met")
    assert base.locator(".filled").inner_text().startswith("The prime s met")
    got = {role: rows(page.locator(f'[data-role="{role}"]')) for role in ("tuned", "base")}
    assert [(t, c) for t, _, c, _ in got["tuned"][0]] == [("…s", "NEW"), ("minister", ""), ("⏎", "NEW")]
    assert [(t, c) for t, _, c, _ in got["base"][0]] == [("s", "OUT"), ("minister", ""), ("␣", "OUT")]
    assert not problems, problems


def test_a_word_written_against_a_mask_is_spaced(server_url, browser):
    """"cat[MASK]" filled with the whole word " suit" read "catsuit" on the page, though the tokenizer decodes
    "cat suit" ("[MASK]s" likewise); a piece still joins its word."""
    problems: list[str] = []
    page = open_page(browser, server_url, problems, viewport={"width": 1280, "height": 800})
    answer = {"text": "The cat[MASK] is [MASK]s.", "models": [
        {"name": "tuned", "role": "tuned", "grown_head": False, "pieces": [[False], [False]],
         "masks": [[prediction(1, 0.5, " suit")], [prediction(2, 0.5, " happy")]]},
        {"name": "base", "role": "base", "grown_head": False, "pieces": [[True], [False]],
         "masks": [[prediction(3, 0.5, "##s")], [prediction(4, 0.5, ".")]]},
    ]}
    answered(page, answer)
    submit(page, answer["text"])
    page.locator('[data-role="base"] .prediction').nth(1).wait_for()
    assert page.locator('[data-role="tuned"] .filled').inner_text() == "The cat suit is happy s."
    assert page.locator('[data-role="base"] .filled').inner_text() == "The cats is .s."
    assert not problems, problems


def test_phone_shows_the_tuned_results_after_fill_in(server_url, browser):
    problems: list[str] = []
    page = open_page(browser, server_url, problems, viewport={"width": 390, "height": 844}, is_mobile=True,
                     has_touch=True, reduced_motion="reduce")
    answered(page, ANSWER)
    page.get_by_label("Sentence with [MASK]").fill(TEXT)
    page.get_by_role("button", name="Fill in").click()
    tuned, base = page.locator('[data-role="tuned"]'), page.locator('[data-role="base"]')
    tuned.locator(".prediction").nth(5).wait_for()
    page.wait_for_function("window.scrollY > 0")
    box = tuned.bounding_box()  # relative to the viewport: the tuned card's top is on screen
    assert 0 <= box["y"] < 844 / 2, box
    assert page.evaluate("window.innerHeight") == 844
    assert base.bounding_box()["y"] >= box["y"] + box["height"] - 1  # the base below it
    track = tuned.locator(".prediction .bar").first.bounding_box()
    assert track["width"] >= 60, track  # a bar, not a dot, beside the word and its value
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert not problems, problems


def test_a_long_word_wraps_on_a_phone(server_url, browser):
    """A word of 80 letters in the sentence widened the filled sentence, so the page scrolled sideways (676 px)."""
    problems: list[str] = []
    page = open_page(browser, server_url, problems, viewport={"width": 390, "height": 844}, is_mobile=True)
    submit(page, "Shares in " + "thecompanyfellsharply" * 4 + " [MASK] after the report.")
    page.locator('[data-role="tuned"] .prediction').first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert not problems, problems


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two CSS rgb()/rgba() colours (opaque)."""
    def luminance(css):
        r, g, b = (int(float(v)) / 255 for v in re.findall(r"[\d.]+", css)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_focus_ring_and_input_borders_reach_3_to_1(server_url, browser, scheme):
    problems: list[str] = []
    page = open_page(browser, server_url, problems, viewport={"width": 1280, "height": 800}, color_scheme=scheme)
    def style(selector, prop):
        return page.evaluate("([sel, prop]) => getComputedStyle(document.querySelector(sel))[prop]", [selector, prop])

    panel = style("#form", "backgroundColor")
    field = style("#text", "backgroundColor")
    for control in ("#text", "#top_k"):
        border = style(control, "borderTopColor")
        for behind in (panel, field):  # the border sits between the panel and the field
            assert contrast(border, behind) >= 3, (scheme, control, border, behind, contrast(border, behind))
    for control in ("#text", "#top_k", "#submit"):
        page.focus(control)
        page.keyboard.press("Shift+Tab")  # focus by keyboard, so :focus-visible applies to the button too
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == control[1:]
        ring = style(control, "outlineColor")
        assert style(control, "outlineStyle") != "none"
        assert float(style(control, "outlineWidth").removesuffix("px")) >= 2
        for behind in (panel, field):
            assert contrast(ring, behind) >= 3, (scheme, control, ring, behind, contrast(ring, behind))
    assert not problems, problems
