"""`make lab`: JupyterLab from the project's venv, on 127.0.0.1 with a token, opened on notebooks/.

Also registers the venv as the Jupyter kernel the notebooks name (``--install-kernel``, run by
the Makefile's install step), so JupyterLab, ``make run`` and the tests all run the notebooks
with this Python, its Spark and the ``helpers`` package.

Usage: ``python scripts/lab.py [--port 8888] [--root notebooks] [--notebook local.ipynb]
[--no-browser]``. The token is ``JUPYTER_TOKEN`` when set, else a new random one; it reaches the
server through its environment (never its command line, which other users may list). Ctrl-C (or
SIGTERM) shuts the server down through its API, which stops the kernels it started (and so
their Spark), then waits for it to exit.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from typing import Dict, List, Optional

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))

#: The kernel the notebooks' metadata names (``metadata.kernelspec.name``).
KERNEL_NAME = "fruits"
KERNEL_DISPLAY_NAME = "Fruits (local Spark)"
#: Environment of every kernel started from the kernel spec (JupyterLab's, papermill's): Spark in
#: local mode binds to loopback, TensorFlow's C++ logging stays quiet, output is not buffered.
KERNEL_ENV = {"SPARK_LOCAL_IP": "127.0.0.1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}

HOST = "127.0.0.1"
DEFAULT_PORT = 8888
STARTUP_SECONDS = 120
SHUTDOWN_SECONDS = 60


def install_kernel(prefix: str = sys.prefix) -> str:
    """Register this interpreter as the kernel spec ``fruits`` under ``prefix`` (the venv).

    Returns the kernel spec's folder. Installing again replaces it.
    """
    from ipykernel.kernelspec import install

    return install(
        kernel_name=KERNEL_NAME,
        display_name=KERNEL_DISPLAY_NAME,
        prefix=prefix,
        env=dict(KERNEL_ENV),
    )


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def headless() -> bool:
    """True where no browser can be shown: Linux/BSD without an X11 or Wayland display."""
    if sys.platform in ("darwin", "win32"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def server_command(root: str, port: int) -> List[str]:
    """The ``jupyter lab`` command line: loopback only, one fixed port, nothing fetched outside.

    The browser is opened by :func:`main` (with the token), never by the server. ``--allow-root``
    is passed only when running as root, where Jupyter refuses to start without it.
    """
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.ip={HOST}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the printed URL is the port in use, or a clear failure
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        # Talk to nothing but 127.0.0.1: no news feed, no update check, no PyPI extension index.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if running_as_root():
        command.append("--allow-root")
    return command


def server_environment(token: str) -> Dict[str, str]:
    environment = dict(os.environ, JUPYTER_TOKEN=token, **KERNEL_ENV)
    environment.pop("JUPYTER_TOKEN_FILE", None)
    return environment


def api(port: int, token: str, path: str, method: str = "GET", timeout: float = 5) -> dict:
    """Call the server's REST API on 127.0.0.1 with the token; the JSON answer."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        method=method,
        headers={"Authorization": f"token {token}"},
        data=b"" if method == "POST" else None,
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback)
        body = response.read()
    return json.loads(body) if body else {}


def wait_until_ready(process: subprocess.Popen, port: int, token: str) -> None:
    """Return once the server answers ``/api/status``; exit with its status if it stopped."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            sys.exit(
                f"lab: JupyterLab exited with status {process.returncode} before it answered "
                f"on {HOST}:{port} (is the port taken? choose another with --port)"
            )
        try:
            api(port, token, "/api/status", timeout=2)
            return
        except (urllib.error.URLError, OSError, ValueError):
            if time.monotonic() > deadline:
                stop(process, port, token)
                sys.exit(
                    f"lab: JupyterLab did not answer on {HOST}:{port} within {STARTUP_SECONDS} s"
                )
            time.sleep(0.5)


def stop(process: subprocess.Popen, port: int, token: str) -> int:
    """Shut the server down through its API (it stops its kernels first), then by signal."""
    if process.poll() is None:
        try:
            api(port, token, "/api/shutdown", method="POST", timeout=SHUTDOWN_SECONDS)
        except (urllib.error.URLError, OSError, ValueError):
            process.terminate()
        try:
            process.wait(timeout=SHUTDOWN_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def notebook_url(port: int, token: str, notebook: Optional[str]) -> str:
    path = f"/lab/tree/{notebook}" if notebook else "/lab"
    return f"http://{HOST}:{port}{path}?token={token}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LAB_PORT") or DEFAULT_PORT),
        help=f"port on 127.0.0.1 (default: LAB_PORT, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--root",
        default=os.path.join(REPO, "notebooks"),
        help="folder JupyterLab opens on (default: notebooks/)",
    )
    parser.add_argument(
        "--notebook",
        default="local.ipynb",
        help="notebook the printed URL opens, relative to --root",
    )
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="do not open a browser (the default where there is no display)",
    )
    parser.add_argument(
        "--install-kernel",
        action="store_true",
        help=f"only register the venv as the kernel {KERNEL_NAME!r} and exit",
    )
    args = parser.parse_args(argv)

    if args.install_kernel:
        print(f"lab: kernel {KERNEL_NAME!r} ({KERNEL_DISPLAY_NAME}) in {install_kernel()}")
        return 0

    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        sys.exit(f"lab: --root {root} is not a folder")
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    # A session of its own: Ctrl-C in the terminal reaches this script only, which then shuts
    # the server down through its API instead of Jupyter's interactive "Shutdown?" prompt.
    process = subprocess.Popen(
        server_command(root, args.port), env=server_environment(token), start_new_session=True
    )
    stopping = []

    def request_stop(signum, frame):  # noqa: ARG001
        stopping.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    try:
        wait_until_ready(process, args.port, token)
        url = notebook_url(args.port, token, args.notebook)
        print(
            f"\nlab: JupyterLab on {root}, kernel {KERNEL_DISPLAY_NAME!r} ({KERNEL_NAME}).\n"
            f"lab: open {url}\n"
            "lab: stop it with Ctrl-C (its kernels and their Spark stop with it)\n",
            flush=True,
        )
        if not (args.no_browser or headless()):
            webbrowser.open(url)
        process.wait()
    except KeyboardInterrupt:
        print("\nlab: shutting JupyterLab down", flush=True)
    finally:
        code = stop(process, args.port, token)
    return 0 if stopping or code in (0, None) else code


if __name__ == "__main__":
    sys.exit(main())
