"""`make lab` for real: the JupyterLab server scripts/lab.py starts, driven by headless Chromium.

The browser test opens a copy of notebooks/local.ipynb (its parameters pointed at a small copy
of the sample) in JupyterLab, runs all cells from the Run menu as a person would, and waits for
the variance figure to be drawn as an image. Chromium (Debian ``chromium``) is driven through
``chromedriver`` (Debian ``chromium-driver``) by selenium; the test is skipped only where they
are not installed. Everything it starts listens on, and talks to, 127.0.0.1 only: a watcher
records every socket the server, its kernels and the browser open, and the test fails on any
other address.
"""

import importlib.util
import io
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import nbformat
import psutil
import pytest
from PIL import Image, ImageStat

from conftest import CLOSING, REPO, copy_subset, scenario

LAB_SCRIPT = os.path.join(REPO, "scripts", "lab.py")
LOCAL_NOTEBOOK = os.path.join(REPO, "notebooks", "local.ipynb")
CHROMIUM = next(
    (
        shutil.which(name)
        for name in ("chromium", "chromium-browser", "google-chrome")
        if shutil.which(name)
    ),
    None,
)
CHROMEDRIVER = shutil.which("chromedriver")
#: Seconds for the whole notebook to run in the browser (about 2 minutes on 2 idle cores).
RUN_ALL_SECONDS = 900


def load_lab():
    spec = importlib.util.spec_from_file_location("fruits_lab", LAB_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_local_notebook_names_the_registered_venv_kernel():
    from jupyter_client.kernelspec import KernelSpecManager

    lab = load_lab()
    kernelspec = nbformat.read(LOCAL_NOTEBOOK, as_version=4).metadata.kernelspec
    assert (kernelspec.name, kernelspec.display_name) == (lab.KERNEL_NAME, lab.KERNEL_DISPLAY_NAME)
    try:
        spec = KernelSpecManager().get_kernel_spec(lab.KERNEL_NAME)
    except Exception as error:  # noqa: BLE001 (NoSuchKernel: say how to get it)
        pytest.fail(
            f"kernel {lab.KERNEL_NAME!r} is not registered ({error}): "
            "run `python scripts/lab.py --install-kernel` (make's install step does)"
        )
    # Installed in this venv (--sys-prefix), running this venv's Python.
    assert os.path.realpath(spec.resource_dir).startswith(os.path.realpath(sys.prefix) + os.sep)
    assert os.path.realpath(os.path.dirname(spec.argv[0])) == os.path.realpath(
        os.path.dirname(sys.executable)
    )
    assert spec.display_name == lab.KERNEL_DISPLAY_NAME
    assert spec.env["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_lab_refuses_a_missing_root(tmp_path):
    completed = subprocess.run(
        [sys.executable, LAB_SCRIPT, "--root", str(tmp_path / "nowhere"), "--no-browser"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert f"--root {tmp_path / 'nowhere'} is not a folder" in completed.stderr


# -- the real thing: JupyterLab + headless Chromium -------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def point_parameters(notebook, **values) -> None:
    """Set ``name = value`` lines of the parameters cell, as a person editing it would."""
    cell = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    for name, value in values.items():
        cell.source, count = re.subn(
            rf"^{name} = .*$", f"{name} = {value!r}", cell.source, flags=re.M
        )
        assert count == 1, f"no line assigning {name} in the parameters cell"


class ConnectionWatcher:
    """Records, every half second, the remote addresses of the sockets opened by the processes
    under the given roots (server, kernels, Spark's JVM and workers, chromedriver, Chromium)."""

    def __init__(self) -> None:
        self.roots = []
        self.outside = set()
        self.seen = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _processes(self):
        for pid in list(self.roots):
            try:
                root = psutil.Process(pid)
                yield root
                yield from root.children(recursive=True)
            except psutil.Error:
                continue

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for process in self._processes():
                try:
                    connections = process.net_connections(kind="inet")
                    name = process.name()
                except psutil.Error:
                    continue
                for connection in connections:
                    if not connection.raddr:
                        continue
                    address = ipaddress.ip_address(connection.raddr.ip)
                    mapped = getattr(address, "ipv4_mapped", None)
                    self.seen.add(connection.raddr.ip)
                    if not (address.is_loopback or (mapped is not None and mapped.is_loopback)):
                        self.outside.add((name, connection.raddr.ip, connection.raddr.port))


def wait_for(predicate, timeout, what, poll=1.0):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline or CLOSING.is_set():
            waited = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout} s waiting for {waited}")
        time.sleep(poll)


#: What the page shows of each cell: its prompt, whether its output has a traceback, and the
#: ``src`` and natural size of the images in its output area.
CELLS_JS = """
return Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell')).map(c => ({
  code: c.classList.contains('jp-CodeCell'),
  prompt: (c.querySelector('.jp-InputPrompt') || {}).textContent || '',
  traceback: Array.from(c.querySelectorAll('.jp-OutputArea-output')).some(
      o => (o.textContent || '').includes('Traceback (most recent call last)')),
  images: Array.from(c.querySelectorAll('.jp-OutputArea-output img')).map(i => ({
      src: (i.getAttribute('src') || '').slice(0, 22), width: i.naturalWidth,
      height: i.naturalHeight, complete: i.complete}))
}));
"""


def click_menu(driver, menu, label):
    """Open the menu bar's ``menu`` and click its item ``label``, as a person would."""
    from selenium.webdriver.common.by import By

    item = next(
        item
        for item in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
        if item.text.strip() == menu
    )
    item.click()
    xpath = (
        "//li[contains(@class, 'lm-Menu-item') and not(contains(@class, 'lm-mod-disabled'))]"
        f"[div[contains(@class, 'lm-Menu-itemLabel') and normalize-space(.) = '{label}']]"
    )
    entry = wait_for(
        lambda: [e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()],
        30,
        f"the item {label!r} in the {menu} menu",
        poll=0.2,
    )[0]
    entry.click()


def browser(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-proxy-server",
        # Any host name but the server's address resolves to nothing.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    # Selenium's driver manager is never needed (chromedriver's path is given): never online.
    environment = dict(os.environ, SE_OFFLINE="true", SE_AVOID_STATS="true")
    return webdriver.Chrome(service=Service(CHROMEDRIVER, env=environment), options=options)


@scenario("lab_run_all")
def run_all_in_jupyterlab(tmp_path):
    """`make lab`'s server, Chromium opening the notebook, Run All Cells, the variance figure
    looked at, the notebook saved, Ctrl-C: checked on the way (a failure names the step), run
    in the background lane of ``conftest.scenarios``. Returns what the end of the test checks:
    the server's exit ``code`` and ``log``, its ``kernels`` and those still ``alive``, and the
    addresses the watcher ``seen`` and those ``outside`` 127.0.0.1."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        return None
    from selenium.webdriver.common.by import By

    lab = load_lab()
    images = copy_subset(str(tmp_path / "images"), classes=2, train=5, test=2)
    outputs = tmp_path / "outputs"
    root = tmp_path / "root"
    root.mkdir()
    notebook = nbformat.read(LOCAL_NOTEBOOK, as_version=4)
    point_parameters(notebook, input_path=images, output_path=str(outputs), spark_master="local[2]")
    nbformat.write(notebook, str(root / "local.ipynb"))
    variance_cell = next(
        index for index, cell in enumerate(notebook.cells) if "run.variance_figure()" in cell.source
    )

    port, token = free_port(), secrets.token_hex(16)
    environment = dict(
        os.environ,
        JUPYTER_TOKEN=token,
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"),
    )
    log_path = tmp_path / "lab.log"
    watcher = ConnectionWatcher()
    driver = None
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, LAB_SCRIPT, "--port", str(port), "--root", str(root), "--no-browser"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    watcher.roots.append(server.pid)
    watcher.start()
    kernels = []
    try:

        def printed_url():
            assert server.poll() is None, f"scripts/lab.py exited: {log_path.read_text()[-3000:]}"
            match = re.search(r"lab: open (\S+)", log_path.read_text(errors="replace"))
            return match and match.group(1)

        url = wait_for(printed_url, 180, "the URL printed by scripts/lab.py")
        assert url == f"http://127.0.0.1:{port}/lab/tree/local.ipynb?token={token}"
        listening = {
            c.laddr.ip
            for p in [
                psutil.Process(server.pid),
                *psutil.Process(server.pid).children(recursive=True),
            ]
            for c in p.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        assert listening == {"127.0.0.1"}, f"JupyterLab listens on {listening}"

        driver = browser(tmp_path / "chromium-profile")
        watcher.roots.append(driver.service.process.pid)
        driver.get(url)
        shown_kernel = []

        def kernel_named():
            shown_kernel[:] = [
                e.text.strip()
                for e in driver.find_elements(
                    By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Toolbar-kernelName"
                )
            ]
            return shown_kernel == [lab.KERNEL_DISPLAY_NAME]

        wait_for(
            kernel_named,
            180,
            lambda: (
                f"the notebook on the kernel "
                f"{lab.KERNEL_DISPLAY_NAME!r} (the toolbar shows {shown_kernel})"
            ),
        )
        # JupyterLab attaches the cells out of view when the browser is idle (its default
        # windowing mode): wait until the page holds every cell.
        attached = []
        wait_for(
            lambda: (
                attached.append(len(driver.execute_script(CELLS_JS)))
                or attached[-1] == len(notebook.cells)
            ),
            180,
            lambda: f"all {len(notebook.cells)} cells in the page ({attached[-1:]} attached)",
        )

        # JupyterLab asks once whether to fetch its news (it could not: make lab turns the feed
        # off); answer as a person would, so the notice leaves the screenshot.
        for button in driver.find_elements(
            By.XPATH,
            "//div[contains(@class, 'Toastify__toast')]//button[normalize-space(.) = 'No']",
        ):
            button.click()
        driver.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell").click()
        click_menu(driver, "Run", "Run All Cells")

        def finished():
            shown = driver.execute_script(CELLS_JS)
            failed = [i for i, cell in enumerate(shown) if cell["traceback"]]
            assert not failed, f"cells {failed} show a traceback in JupyterLab"
            done = all(
                re.fullmatch(r"\[\d+\]:", cell["prompt"].strip()) for cell in shown if cell["code"]
            )
            return done and shown

        shown = wait_for(finished, RUN_ALL_SECONDS, "Run All Cells to finish in JupyterLab")
        figures = [image for image in shown[variance_cell]["images"] if image["complete"]]
        assert figures and figures[0]["src"].startswith("data:image/png;base64,")
        assert figures[0]["width"] > 300 and figures[0]["height"] > 200

        figure = driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")[
            variance_cell
        ].find_element(By.CSS_SELECTOR, ".jp-OutputArea-output img")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure)
        time.sleep(1)
        screenshot = tmp_path / "jupyterlab.png"
        assert driver.save_screenshot(str(screenshot))
        page = Image.open(screenshot).convert("L")
        assert page.size[0] >= 1000 and ImageStat.Stat(page).stddev[0] > 20, (
            f"the screenshot {screenshot} looks blank"
        )
        drawn = Image.open(io.BytesIO(figure.screenshot_as_png)).convert("L")
        low, high = drawn.getextrema()
        assert high - low > 100 and len(drawn.getcolors(256)) > 20, (
            "the variance figure is shown but blank"
        )

        click_menu(driver, "File", "Save Notebook")

        def saved():
            executed = nbformat.read(str(root / "local.ipynb"), as_version=4)
            code = [cell for cell in executed.cells if cell.cell_type == "code"]
            return all(cell.execution_count for cell in code) and executed

        executed = wait_for(saved, 60, "the executed notebook saved by JupyterLab")
        errors = [
            output
            for cell in executed.cells
            if cell.cell_type == "code"
            for output in cell.outputs
            if output.output_type == "error"
        ]
        assert not errors, errors
        assert any(
            "image/png" in output.get("data", {})
            for output in executed.cells[variance_cell].outputs
        )
        manifest = json.loads((outputs / "manifest.json").read_text())
        assert manifest["images_total"] == manifest["images_featurized"] == 2 * (5 + 2)
    finally:
        if driver is not None:
            driver.quit()
        try:
            kernels = [
                child
                for child in psutil.Process(server.pid).children(recursive=True)
                if "ipykernel_launcher" in " ".join(child.cmdline())
            ]
        except psutil.Error:
            kernels = []
        server.send_signal(signal.SIGTERM)  # what Ctrl-C in `make lab` does: the script stops it
        try:
            code = server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            code = server.wait()
        _, alive = psutil.wait_procs(kernels, timeout=30)
        for process in alive:
            process.kill()
        watcher.stop()
    return {
        "code": code,
        "log": log_path.read_text()[-3000:],
        "kernels": kernels,
        "alive": alive,
        "seen": watcher.seen,
        "outside": watcher.outside,
    }


@pytest.fixture(scope="session")
def lab_run_all(scenarios):
    return scenarios.result("lab_run_all")


@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)",
)
def test_make_lab_runs_the_local_notebook_in_headless_chromium(lab_run_all):
    code, log = lab_run_all["code"], lab_run_all["log"]
    assert code == 0, f"scripts/lab.py exited with {code}: {log}"
    assert lab_run_all["kernels"] and not lab_run_all["alive"], "the kernels stop with the server"
    assert "127.0.0.1" in lab_run_all["seen"], "the watcher saw the browser's and kernels' sockets"
    assert not lab_run_all["outside"], (
        f"connections outside 127.0.0.1: {sorted(lab_run_all['outside'])}"
    )
