"""Issue 15, finding 8 (and the UI side of finding 5), black-box: what a person sees in the page.

`python app.py --offline-demo` runs in a subprocess with a queue of one waiting run
(PEZ_QUEUE_SIZE=1), so a full queue is easy to make from the API; Playwright drives Debian's
chromium (never a downloaded browser), one fresh page per test.

Each test's docstring says what a person saw before issue 15 was fixed.
Needs `apt-get install chromium` and `pip install playwright`; skipped when either is missing, failed
when CI is set (tests/e2e/chromium.py).
"""

from __future__ import annotations

import contextlib
import re
import time
from contextlib import contextmanager

import pytest

from ..public_server import ROOT, start_server
from .chromium import CHROMIUM, CHROMIUM_ARGS, require_browser

pytestmark = pytest.mark.browser
sync_api = require_browser()  # skipped without chromium or playwright; failed under CI

TOYS = sorted(str(p) for p in (ROOT / "assets" / "examples").glob("toy_*.png"))
PHOTO = str(ROOT / "assets" / "photos" / "cat.jpg")
RUN_SECONDS = 30  # the server's time limit: no run outlasts a test by more than this
SERVER_ENV = {"PEZ_QUEUE_SIZE": "1", "PEZ_MAX_STEPS": "5000", "PEZ_MAX_RUN_SECONDS": str(RUN_SECONDS)}
WAIT = 10_000  # ms: how long a state may take to show up (a fixed app shows it in ~1 s)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("browser-states"), SERVER_ENV)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(server, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server.url)
    page.wait_for_selector("#tab-image")
    page.evaluate(  # every text the status line shows, in order
        """() => { window.__statuses = []; const el = document.querySelector('#image-status');
        new MutationObserver(() => window.__statuses.push(el.innerText))
          .observe(el, {subtree: true, childList: true, characterData: true}); }"""
    )
    yield page
    context.close()


def wait_for(page, js: str, arg=None, what: str = "", timeout: int = WAIT) -> None:
    """Wait for a JS condition; a timeout is an assertion (the state the user should see never came)."""
    try:
        page.wait_for_function(js, arg=arg, timeout=timeout)
    except sync_api.TimeoutError as e:
        raise AssertionError(f"{what} (status: {status(page)!r}; toasts: {toasts(page)})") from e


def status(page) -> str:
    return page.inner_text("#image-status")


def toasts(page) -> list[str]:
    return page.evaluate("() => Array.from(document.querySelectorAll('.toast-body')).map(t => t.innerText)")


def wait_status(page, pattern: str, timeout: int = WAIT) -> None:
    js = "(pat) => new RegExp(pat).test(document.querySelector('#image-status')?.innerText || '')"
    wait_for(page, js, pattern, f"the status never matched {pattern!r}", timeout)


def upload(page, path: str) -> None:
    page.set_input_files("#image-input input[type=file]", path)
    page.wait_for_selector("#image-input img")


def set_number(page, label: str, value) -> None:
    """Type a number as a person would (the settings accordion opens first)."""
    if not page.get_by_label(label, exact=True).is_visible():
        page.get_by_text("Settings — model and search").click()
    box = page.get_by_label(label, exact=True)
    box.click()
    box.press("Control+a")
    box.press_sequentially(str(value), delay=30)
    box.press("Enter")
    page.wait_for_timeout(300)


def search(page, path: str, steps: int = 30, done: str = "^(Done|Stopped)") -> None:
    set_number(page, "Steps", steps)
    upload(page, path)
    page.click("#image-run")
    wait_status(page, done, timeout=90_000)


@contextmanager
def full_queue(server):
    """One long API run holds the model slot and one more waits: the queue (size 1) is full."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    client = Client(server.url, verbose=False)
    args = dict(model="toy", prompt_len=16, steps=5000, candidates=1, seed=0, patience=0, refine_steps=0)
    jobs = []
    running = (Status.PROCESSING, Status.ITERATING, Status.PROGRESS)
    try:
        # The first run must hold the slot before the second is sent (no race between the two).
        jobs.append(client.submit(handle_file(TOYS[0]), **args, api_name="/invert"))
        deadline = time.monotonic() + 60  # a hang guard, not a speed check
        while time.monotonic() < deadline and jobs[0].status().code not in running:
            time.sleep(0.2)
        assert jobs[0].status().code in running, f"the first run did not start: {jobs[0].status().code}"
        jobs.append(client.submit(handle_file(TOYS[0]), **args, api_name="/invert"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and jobs[1].status().code != Status.IN_QUEUE:
            time.sleep(0.2)
        assert jobs[1].status().code == Status.IN_QUEUE, "could not fill the queue from the API"
        yield
    finally:  # end both runs, and wait until they are over: the next test needs an idle server
        for job in reversed(jobs):
            with contextlib.suppress(Exception):  # a busy machine may answer the cancel late
                job.cancel()
        deadline = time.monotonic() + RUN_SECONDS + 10  # a run the cancel missed ends at the time limit
        while time.monotonic() < deadline and not all(job.done() for job in jobs):
            time.sleep(0.2)


def test_an_idle_server_never_says_another_run_is_using_it(page):
    """Before issue 15: every run starts with that text, on an idle server too."""
    search(page, TOYS[0])
    seen = page.evaluate("window.__statuses")
    wrong = [s for s in seen if "another run" in s or "Waiting in the queue" in s]
    assert not wrong, f"an idle server said: {wrong[0]!r}"


def test_stop_after_a_queue_full_refusal_does_not_claim_the_run_was_waiting(server, page):
    """Before issue 15: '⚠ Error: the run failed (see the message)', then Stop says 'Stopped before it started (it was waiting…)'."""
    upload(page, TOYS[1])
    with full_queue(server):
        page.click("#image-run")
        wait_status(page, "^⚠|^Error")
        assert "busy" in status(page).lower() or "full" in status(page).lower(), f"status: {status(page)!r}"
        page.click("#image-stop")
        page.wait_for_timeout(1500)
        assert "before it started" not in status(page), f"after Stop: {status(page)!r}"


def test_an_upload_is_checked_even_when_the_queue_is_full(server, page, tmp_path):
    """Before issue 15: 'This application is currently busy' instead of the check of the file."""
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with full_queue(server):
        page.set_input_files("#image-input input[type=file]", str(bad))
        wait_for(
            page,
            "() => /cannot be used/.test(document.body.innerText)",
            what="the bad upload was not reported while the queue was full",
        )
        assert not any("currently busy" in t for t in toasts(page)), toasts(page)


def test_regenerate_during_your_own_search_says_it_waits(page):
    """Before issue 15: nothing shows until the search ends, then the images appear."""
    set_number(page, "Steps", 5000)  # long enough to still run after the click
    set_number(page, "Early stop: patience (steps, 0 = off)", 0)
    upload(page, TOYS[2])
    page.click("#image-run")
    wait_status(page, r"Step \d+ / 5000")
    page.fill("#image-prompt textarea", "an orange cross")
    page.click("#image-regen")
    try:
        wait_for(
            page,
            "() => /wait|search/i.test((document.querySelector('#image-summary')?.innerText || '') + "
            "Array.from(document.querySelectorAll('.toast-body')).map(t => t.innerText).join(' '))",
            what="Regenerate gave no sign that it waits for the running search",
            timeout=5000,
        )
    finally:
        page.click("#image-stop")
        wait_status(page, "^(Done|Stopped)", timeout=60_000)


def test_a_photo_searched_with_the_toy_world_model_gets_a_warning(page):
    """Before issue 15: 'Done … best score 0.9…' and no word about the toy model (expected in the status or a toast)."""
    search(page, PHOTO)
    seen = f"{status(page)} {' '.join(toasts(page))}"
    assert "toy" in seen.lower(), f"no word that the toy CLIP only knows coloured shapes: {seen!r}"


def test_negative_prompt_mode_fills_only_the_negative_prompt(page):
    """Before issue 15: both boxes hold the prompt found."""
    page.click("#image-goal >> text=a negative prompt")
    search(page, TOYS[3])
    page.get_by_text("Regeneration options").first.click()
    negative = page.input_value("#image-negative textarea")
    assert negative, "the negative prompt box is empty"
    assert page.input_value("#image-prompt textarea") != negative, "the prompt box holds the negative prompt too"


def test_the_loss_plot_legend_is_inside_the_plot(page):
    """Before issue 15: the legend entries are drawn below the plot's visible area."""
    search(page, TOYS[4])
    page.wait_for_selector("#image-plot svg")
    outside = page.evaluate(
        """() => { const box = document.querySelector('#image-plot').getBoundingClientRect();
        return Array.from(document.querySelectorAll('#image-plot svg text'))
          .filter(t => /best score|moving average/.test(t.textContent))
          .map(t => [t.textContent, t.getBoundingClientRect()])
          .filter(([_, r]) => r.bottom > box.bottom + 1 || r.right > box.right + 1 || r.width === 0)
          .map(([s, r]) => `${s} at (${Math.round(r.left)}, ${Math.round(r.bottom)})`); }"""
    )
    labels = page.evaluate("() => document.querySelectorAll('#image-plot svg text').length")
    assert labels and not outside, f"legend entries outside the plot: {outside}"


def test_the_chosen_model_pair_is_shown_whole(page):
    """Before issue 15: 'Toy world (offline demo, no download) · toy C…' overflows its box."""
    page.get_by_text("Settings — model and search").click()
    box = page.locator("#model input")
    box.wait_for()
    scroll, client = box.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert scroll <= client, f"{box.input_value()!r} needs {scroll} px, shows {client} px"


def test_use_via_api_can_be_reached(page):
    """Before issue 15: 'footer { display: none }' hides 'Use via API'."""
    assert page.locator("footer").is_visible(), "the footer is hidden"
    assert page.get_by_text("Use via API").first.is_visible(), "'Use via API' is not visible"


def test_an_out_of_range_number_typed_in_the_ui_is_named_not_clamped(page):
    """Before issue 15: Steps 0 runs 1 step ('Done after 1 steps') while the box shows 0. Now the
    settings are number boxes that keep what was typed, and the run is refused by the field's name."""
    set_number(page, "Steps", 0)
    upload(page, TOYS[5])
    page.click("#image-run")
    wait_for(
        page,
        "() => /Steps.*0/.test((document.querySelector('#image-status')?.innerText || '') + "
        "Array.from(document.querySelectorAll('.toast-body')).map(t => t.innerText).join(' '))",
        what="Steps 0 was not reported by name",
    )
    assert not status(page).startswith("Done"), status(page)
    assert page.get_by_label("Steps", exact=True).input_value() == "0", "the box no longer shows what was typed"


# ---------------------------------------------------------------------------------------------
# Issue 24, item 1: share links. Each test's docstring says what a newcomer saw before the fix.


def share_link(page, tab: str) -> str:
    """Press the tab's Share button as a person would; return the link it copied."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.evaluate("() => navigator.clipboard.writeText('')")
    page.locator(f"#tab-{tab}").get_by_role("button", name=re.compile("Share")).click()
    for _ in range(100):  # the copy happens after a round trip (what wait_for_function cannot await)
        text = page.evaluate("() => navigator.clipboard.readText()")
        if "deep_link=" in text:
            return text
        page.wait_for_timeout(100)
    raise AssertionError(f"no link copied (the button reads {page.locator(f'#tab-{tab}').inner_text()[-200:]!r})")


def open_link(browser, link: str):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    shared = context.new_page()
    shared.set_default_timeout(60_000)
    shared.goto(link)
    shared.wait_for_selector("#tabs")
    return shared


def test_an_image_link_restores_the_prompt_and_the_edit_made_before_sharing(page, browser):
    """Before issue 24: the Prompt box of an Image → Prompt link was empty; a link made after
    editing the prompt was the same as before the edit; nothing said the link was copied."""
    search(page, TOYS[2])
    found = page.input_value("#image-prompt textarea")
    assert found
    first = share_link(page, "image")
    assert page.locator("#tab-image").get_by_text("copied").first.is_visible(), "no 'copied' feedback"
    shared = open_link(browser, first)
    wait_for(shared, "(p) => document.querySelector('#image-prompt textarea')?.value === p", found, "prompt lost")
    wait_for(  # the walkthrough: the link's status line came back blank
        shared,
        "() => (document.querySelector('#image-status')?.innerText || '').includes('Done after')",
        what="the status line did not come back",
    )
    shared.context.close()
    page.fill("#image-prompt textarea", "an edited prompt")
    second = share_link(page, "image")
    assert second != first, "the link does not carry the edit"
    shared = open_link(browser, second)
    wait_for(
        shared,
        "() => document.querySelector('#image-prompt textarea')?.value === 'an edited prompt'",
        what="the edited prompt did not come back",
    )
    shared.context.close()


def test_a_multi_image_link_opens_on_its_tab_with_its_images_and_run_label(page, browser):
    """Before issue 24: a Multi-image link opened on the first tab, the input images blank and the
    run button reading 'Run'."""
    page.click("#tab-multi-button")
    page.set_input_files("#multi-input input[type=file]", TOYS[:2])
    page.wait_for_selector("#multi-input img")
    link = share_link(page, "multi")
    shared = open_link(browser, link)
    wait_for(shared, "() => document.querySelector('#tab-multi')?.offsetParent !== null", what="not on Multi-image")
    wait_for(
        shared,
        "() => Array.from(document.querySelectorAll('#multi-input img')).filter(i => i.naturalWidth > 0).length === 2",
        what="the input images did not come back",
    )
    assert shared.inner_text("#multi-run").strip() == "▶ Find one prompt"
    shared.context.close()


def test_a_link_never_writes_into_the_visitors_history(server, page, browser):
    """Issue 23: a link made after calling the History 'clear' handler with crafted records showed
    'Undo clear', and one click wrote those records into the visitor's History."""
    page.click("#tab-history-button")
    page.click("#history-clear")
    page.click("#tab-image-button")
    link = share_link(page, "image")
    shared = open_link(browser, link)
    shared.click("#tab-history-button")
    undo = shared.locator("#history-undo")
    if undo.is_visible():
        undo.click()
        shared.wait_for_timeout(500)
    stored = shared.evaluate("() => localStorage.getItem('pez-history-v2') || '[]'")
    assert stored == "[]", f"the visitor's History was written by a link: {stored[:200]}"
    shared.context.close()


def test_a_link_carries_the_result_not_the_sharers_history(server, page):
    """Issue 23, item 6: a link saved the session's whole state, the sharer's History table (every
    prompt they ever found, from this browser's storage) included."""
    import httpx

    page.evaluate(
        """() => localStorage.setItem('pez-history-v2', JSON.stringify([{id: 'p1', time: '2026-01-01T00:00:00',
        mode: 'image', prompt: 'a private earlier prompt', score: 0.5, model: 'toy', settings: {}}]))"""
    )
    page.reload()
    page.wait_for_selector("#tab-image")
    page.click("#tab-history-button")
    wait_for(
        page,
        "() => document.querySelector('#history-table')?.innerText.includes('private earlier')",
        what="the History table never showed the stored run",
    )
    page.click("#tab-image-button")
    page.fill("#image-prompt textarea", "the shared prompt")
    link = share_link(page, "image")
    config = httpx.get(server.url + "config", params={"deep_link": link.split("deep_link=")[1]}).text
    assert "the shared prompt" in config and "private earlier" not in config
    assert len(config) < 1_000_000
    page.click("#tab-history-button")  # the sharer's own table is back
    wait_for(
        page,
        "() => document.querySelector('#history-table')?.innerText.includes('private earlier')",
        what="the sharer's History table was not refilled after sharing",
    )


def test_style_and_distill_links_restore_their_inputs_and_tab(page, browser):
    """Issue 24, item 1: every link opened on the first tab, its inputs lost."""
    page.click("#tab-style-button")
    page.click("#tab-style >> text=Example: green toy shapes")
    page.wait_for_selector("#style-input img")
    shared = open_link(browser, share_link(page, "style"))
    wait_for(shared, "() => document.querySelector('#tab-style')?.offsetParent !== null", what="not on Style transfer")
    wait_for(
        shared,
        "() => Array.from(document.querySelectorAll('#style-input img')).some(i => i.naturalWidth > 0)",
        what="the style images did not come back",
    )
    shared.context.close()
    page.click("#tab-distill-button")
    page.fill("#distill-long textarea", "a long prompt about a red star")
    shared = open_link(browser, share_link(page, "distill"))
    wait_for(shared, "() => document.querySelector('#tab-distill')?.offsetParent !== null", what="not on Distill")
    wait_for(
        shared,
        "() => document.querySelector('#distill-long textarea')?.value === 'a long prompt about a red star'",
        what="the long prompt did not come back",
    )
    shared.context.close()
