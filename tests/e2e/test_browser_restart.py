"""Issue 23, item 7, black-box: a run survives its server restarting, in the browser.

`python app.py --offline-demo` runs in a subprocess; chromium (Debian's) starts a long search, the
server is killed mid-run and started again on the same port. Before issue 23 the page said nothing
(its status line kept "Step 6 / 5000 · about 60 s left"), History had nothing of the run, and the
page reloaded after the restart started empty. Needs chromium and playwright; skipped without.
"""

from __future__ import annotations

import pytest

from ..public_server import start_server
from .test_browser_states import CHROMIUM, CHROMIUM_ARGS, TOYS, set_number, sync_api, upload

pytestmark = pytest.mark.browser
SERVER_ENV = {"PEZ_MAX_STEPS": "5000", "PEZ_MAX_RUN_SECONDS": "60"}
PROMPT = "#image-prompt textarea"


def test_a_run_survives_a_server_restart(tmp_path):
    srv = start_server(tmp_path, SERVER_ENV)
    again = None
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(srv.url)
            page.wait_for_selector("#tab-image")
            set_number(page, "Steps", 5000)
            upload(page, TOYS[0])
            page.click("#image-run")
            page.wait_for_function(f"() => (document.querySelector('{PROMPT}')?.value || '').length > 0")
            page.wait_for_function("() => /^Step \\d/.test(document.querySelector('#image-status')?.innerText || '')")
            srv.proc.kill()  # as a crash or a Space restart does: no goodbye
            srv.proc.wait()
            page.wait_for_function(
                "() => /Interrupted: the connection to the server was lost/"
                ".test(document.querySelector('#image-status')?.innerText || '')",
                timeout=30_000,
            )
            kept = page.input_value(PROMPT)
            assert kept, "the prompt the run had reached was lost"
            history = page.evaluate("() => JSON.parse(localStorage.getItem('pez-history-v2') || '[]')")
            assert history and history[0]["prompt"] == kept and history[0]["interrupted"], history[:1]
            assert "interrupted" in history[0]["mode"] and "lost" in history[0]["note"]
            # The server comes back on the same port; the page is reloaded (as a person would).
            port = srv.url.rstrip("/").rsplit(":", 1)[1]
            again = start_server(tmp_path, SERVER_ENV, port=int(port))
            page.reload()
            page.wait_for_selector("#tab-image")
            page.wait_for_function(f"(p) => document.querySelector('{PROMPT}')?.value === p", arg=kept)
            assert "Interrupted" in page.inner_text("#image-status")
            history = page.evaluate("() => JSON.parse(localStorage.getItem('pez-history-v2') || '[]')")
            assert [h["prompt"] for h in history].count(kept) == 1, "the interrupted run was recorded twice"
            browser.close()
    finally:
        for s in (srv, again):
            if s is not None:
                s.stop()
