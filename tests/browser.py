"""Headless Chromium for the tests: a page and a test wrapper served on 127.0.0.1, the DOM read.

The wrapper (a test page, never part of the report, which has no script) loads the page in a
frame from the same origin and writes what it measured as JSON into ``<pre id="result">``;
Chromium's ``--dump-dom`` prints the DOM once its virtual time budget is spent.
"""

import functools
import html
import http.server
import json
import re
import shutil
import subprocess
import threading

#: Debian's ``chromium`` (or another Chromium-based browser), ``None`` where none is installed.
CHROMIUM = next(
    (
        shutil.which(name)
        for name in ("chromium", "chromium-browser", "google-chrome")
        if shutil.which(name)
    ),
    None,
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


def measure_page(page_path, wrapper, tmp_path, *chromium_args, budget_ms=15000):
    """What the ``wrapper`` page measured of the page at ``page_path``, in headless Chromium.

    Both are served as ``report.html`` and ``wrapper.html`` from a folder under ``tmp_path``
    by a server on 127.0.0.1; ``chromium_args`` are added to Chromium's command line (e.g. a
    window size). Fails the test when Chromium gives no result or the page did not load.
    """
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(page_path, site / "report.html")
    (site / "wrapper.html").write_text(wrapper, encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        completed = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'profile'}",
                *chromium_args,
                f"--virtual-time-budget={budget_ms}",
                "--dump-dom",
                f"http://127.0.0.1:{server.server_address[1]}/wrapper.html",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        server.server_close()
    match = re.search(r'<pre id="result">(.*?)</pre>', completed.stdout, re.S)
    assert match, f"no DOM from Chromium (rc {completed.returncode}): {completed.stderr[-2000:]}"
    assert match.group(1) != "pending", "the report did not finish loading in the browser"
    return json.loads(html.unescape(match.group(1)))
