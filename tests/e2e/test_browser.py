"""A real browser drives the app: Playwright with Debian's chromium (never a downloaded browser).

It uploads an image, runs a search, sees the loss plot and the prompt update, presses Stop (the
best prompt stays), edits the prompt, regenerates and sees images; then runs every other tab, with
a second browser tab adding a run meanwhile, and checks History keeps both tabs' runs across a
reload; a bad upload is reported on upload and the status shows the error after Run. Screenshots
(desktop 1280x800 and phone 400 px wide) go to $PEZ_SCREENSHOTS (e.g. docs/screenshots) or to
pytest's tmp folder.

Needs `apt-get install chromium` and `pip install playwright`; skipped when either is missing, failed
when CI is set (tests/e2e/chromium.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .chromium import CHROMIUM, CHROMIUM_ARGS, require_browser

pytestmark = pytest.mark.browser
sync_api = require_browser()  # skipped without chromium or playwright; failed under CI

import app  # noqa: E402
from pez_app import LAUNCH_KWARGS  # noqa: E402
from pez_app.components import toy_examples  # noqa: E402
from pez_app.tabs.distill import TOY_LONG_PROMPT  # noqa: E402

TAB_NAMES = {"image": "Image → Prompt", "multi": "Multi-image", "style": "Style transfer", "distill": "Distill"}
TAB_NAMES["history"] = "History"
TIMEOUT = 120_000  # ms; the CPU may be shared


@pytest.fixture(scope="module")
def server():
    demo = app.build_demo(offline_demo=True)  # the toy world model: no download
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **LAUNCH_KWARGS)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(server)
        page.wait_for_selector("#tab-image")
        yield page
        context.close()
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("PEZ_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page, path: Path, full_page: bool = True) -> None:
    """Screenshot, palette-quantised (a third of the size, same look) for the README."""
    from PIL import Image

    page.mouse.move(0, 0)  # no hover effects
    page.screenshot(path=str(path), full_page=full_page)
    img = Image.open(path).convert("RGB")
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def status_text(page, tab: str) -> str:
    return page.inner_text(f"#{tab}-status")


def prompt_value(page, tab: str) -> str:
    return page.input_value(f"#{tab}-prompt textarea")


def set_number(page, label: str, value) -> None:
    """Type a number as a person would (a bare fill() can race the slider's own input handling,
    which then restores the old value on Enter) and check that it stuck."""
    box = page.get_by_label(label, exact=True)
    for _ in range(3):
        box.click()
        box.press("Control+a")
        box.press_sequentially(str(value), delay=30)
        page.wait_for_timeout(200)
        box.press("Enter")
        page.wait_for_timeout(200)
        if box.input_value() == str(value):
            return
    raise AssertionError(f"{label} reads {box.input_value()!r} after typing {value!r}")


def open_tab(page, tab: str) -> None:
    if not page.is_visible(f"#tab-{tab}-button"):  # narrow window: the tab is in the overflow menu
        page.click("#tabs .overflow-menu > button")
        page.click(f"#tabs .overflow-dropdown button:text-is('{TAB_NAMES[tab]}')")
        page.wait_for_selector(f"#tab-{tab}", state="visible")
        return
    page.click(f"#tab-{tab}-button")
    page.wait_for_selector(f"#tab-{tab}", state="visible")


def wait_status(page, tab: str, pattern: str) -> None:
    try:
        page.wait_for_function(
            "([sel, pat]) => new RegExp(pat).test(document.querySelector(sel)?.innerText || '')",
            arg=[f"#{tab}-status", pattern],
        )
    except sync_api.TimeoutError as e:
        raise AssertionError(f"status never matched {pattern!r}; it reads {status_text(page, tab)!r}") from e


def test_browser_flow(page, shots):
    toys = toy_examples()
    assert toys, "assets/examples/toy_*.png are missing"
    assert page.is_visible("#offline-banner")

    # Settings: a long run, so there is time to watch it and press Stop (no early stop: the toy
    # search can stop itself after a couple of hundred steps, before the test presses Stop).
    page.get_by_text("Settings — model and search").click()
    set_number(page, "Steps", 3000)
    set_number(page, "Prompt length (tokens)", 4)
    set_number(page, "Early stop: patience (steps, 0 = off)", 0)

    # 1. Upload an image and run: the status, plot and prompt update live.
    page.set_input_files("#image-input input[type=file]", toys[0])
    page.wait_for_selector("#image-input img")
    page.click("text=▶ Find prompt")
    wait_status(page, "image", r"Step \d+ / 3000")
    first = status_text(page, "image")
    page.wait_for_function(
        "([sel, before]) => (document.querySelector(sel)?.innerText || '') !== before && "
        "/Step \\d+ \\/ 3000/.test(document.querySelector(sel).innerText)",
        arg=["#image-status", first],
    )  # the step count moved on
    page.wait_for_selector("#image-plot canvas, #image-plot svg")
    assert prompt_value(page, "image")  # the best prompt so far is shown
    assert int(re.search(r"Step (\d+)", status_text(page, "image")).group(1)) > 0

    # 2. Stop: the best prompt stays, and nothing overwrites it afterwards.
    page.click("#image-stop")
    wait_status(page, "image", "Stopped")
    kept = prompt_value(page, "image")
    assert kept
    page.wait_for_timeout(1500)
    assert prompt_value(page, "image") == kept and "Stopped" in status_text(page, "image")

    # 3. Edit the prompt and regenerate: images appear beside the target, with scores.
    page.fill("#image-prompt textarea", "a blue star")
    page.click("#image-regen")
    page.wait_for_selector("#image-gallery img")
    page.wait_for_function("document.querySelector('#image-gallery')?.innerText.includes('sim ')")
    shoot(page, shots / "image-to-prompt.png")

    # Short runs from here on; settings folded away.
    set_number(page, "Steps", 60)
    page.get_by_text("Settings — model and search").click()

    # 4. Multi-image, concatenate mode: each image inverted, prompts joined, scene regenerated.
    open_tab(page, "multi")
    page.click("#tab-multi >> text=Example: toy shapes")
    page.wait_for_selector("#multi-input img")
    page.click("#tab-multi >> text=Concatenate: one prompt per image, joined")
    page.click("#tab-multi >> text=▶ Invert each and join")
    wait_status(page, "multi", "Done: \\d of \\d images")
    assert ", " in prompt_value(page, "multi")
    page.click("#multi-regen")
    page.wait_for_selector("#multi-gallery img")
    shoot(page, shots / "multi-image.png")

    # 5. Style transfer: style prompt, subjects, regenerate each subject.
    open_tab(page, "style")
    page.click("#tab-style >> text=Example: green toy shapes")
    page.wait_for_selector("#style-input img")
    page.click("#tab-style >> text=▶ Find style prompt")
    wait_status(page, "style", "Done after 60 steps")
    page.wait_for_function("document.querySelector('#style-styled textarea')?.value.includes('in the style of')")
    page.click("#style-regen")
    page.wait_for_selector("#style-gallery img")
    shoot(page, shots / "style-transfer.png")

    # A second browser tab (same browser, so the same stored History) adds a run meanwhile.
    other = page.context.new_page()
    other.set_default_timeout(TIMEOUT)
    other.goto(page.url)
    other.wait_for_selector("#tab-image")
    other.get_by_text("Settings — model and search").click()
    set_number(other, "Steps", 30)
    other.set_input_files("#image-input input[type=file]", toys[1])
    other.wait_for_selector("#image-input img")
    other.click("#image-run")
    wait_status(other, "image", "Done after 30 steps")
    from_other = prompt_value(other, "image")
    other.wait_for_function(  # the run is saved (merged into the stored list) right after it ends
        "(p) => (localStorage.getItem('pez-history-v2') || '').includes(JSON.stringify(p).slice(1, -1))",
        arg=from_other,
    )
    other.close()

    # 6. Distill: a long prompt -> a short one, then both regenerated (this tab saves after the other).
    open_tab(page, "distill")
    page.fill("#distill-long textarea", TOY_LONG_PROMPT)
    set_number(page, "Short prompt length (tokens)", 4)  # the length the user chose
    page.click("#tab-distill >> text=▶ Distill")
    wait_status(page, "distill", "→ 4 tokens · CLIP text similarity")
    page.click("#distill-regen")
    page.wait_for_selector("#distill-short-gallery img")
    shoot(page, shots / "distill.png")

    # 7. History: every prompt of both tabs, the stopped one included, kept across a reload.
    open_tab(page, "history")
    page.wait_for_function("document.querySelector('#history-table')?.innerText.includes('distill')")
    table = page.inner_text("#history-table")
    assert kept in table and "concatenate" in table and "style" in table
    assert from_other in table, "the other tab's run was overwritten"
    shoot(page, shots / "history.png")
    page.reload()
    page.wait_for_selector("#tab-image")
    open_tab(page, "history")
    page.wait_for_function("document.querySelector('#history-table')?.innerText.includes('distill')")
    assert kept in page.inner_text("#history-table") and from_other in page.inner_text("#history-table")
    page.click(f"#history-table >> text={kept}")  # pick the stopped run's prompt and reuse it
    page.wait_for_function("document.querySelector('#history-picked textarea')?.value.length > 0")
    assert page.input_value("#history-picked textarea") == kept
    page.click("#history-use")
    page.wait_for_selector("#tab-image", state="visible")
    assert prompt_value(page, "image") == kept

    # 8. Share: the deep link (what the share button copies) reopens the page with this result.
    page.click("#tab-image >> text=Share this result")
    page.wait_for_selector("#tab-image >> text=Link copied")
    link = page.evaluate(
        "fetch('gradio_api/deep_link?session_hash=' + window.__gradio_session_hash__).then(r => r.text())"
    ).strip('"')
    shared = page.context.new_page()
    shared.goto(f"{page.url.split('?')[0]}?deep_link={link}")
    shared.wait_for_function("document.querySelector('#image-prompt textarea')?.value.length > 0")
    assert prompt_value(shared, "image") == kept
    shared.close()

    # 9. Clear history can be undone.
    open_tab(page, "history")
    page.click("#history-clear")
    page.wait_for_selector("#history-undo", state="visible")
    page.wait_for_function("!document.querySelector('#history-table')?.innerText.includes('distill')")
    page.click("#history-undo")
    page.wait_for_function("document.querySelector('#history-table')?.innerText.includes('distill')")

    # 10. Phone width: the tabs that do not fit sit behind a labelled menu.
    open_tab(page, "image")
    page.set_viewport_size({"width": 400, "height": 800})
    page.wait_for_timeout(500)
    label = page.evaluate(
        "(() => { const b = document.querySelector('#tabs .overflow-menu:not(.hide) > button');"
        " return b ? getComputedStyle(b, '::before').content : ''; })()"
    )
    assert page.is_visible("#tab-history-button") or "More tabs" in label
    shoot(page, shots / "phone.png", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 800})


def test_bad_upload_and_the_status_after_an_error(page, tmp_path):
    """A .txt renamed .png: a message on upload, the file taken out (issue 24: it left a
    broken-image icon), and after Run the status shows the error state (never a stale 'Loading …')."""
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    open_tab(page, "image")
    page.set_input_files("#image-input input[type=file]", str(bad))
    page.wait_for_selector("text=This file cannot be used")
    page.wait_for_function("!document.querySelector('#image-input img')")  # no broken-image tile left
    page.click("#image-run")
    wait_status(page, "image", "^⚠ Error: Add an image first")
    assert "Loading" not in status_text(page, "image")
