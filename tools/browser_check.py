"""Browser check: does an executed results notebook render in JupyterLab? (`make browser-check`; not in `make test`)

Starts JupyterLab headless on 127.0.0.1 (a free port, a random token, throw-away settings/workspace/runtime
directories) with this Python's kernel, opens a copy of the notebook (JupyterLab writes checkpoints beside what it
opens; results/ stays untouched) in headless Chromium driven by Playwright, waits until every cell has rendered and
the kernel is idle, then checks:

* figures: every image output is an <img> with non-zero size that has loaded (and as many as the notebook holds);
* tables: every HTML table output (pandas DataFrames) is rendered with rows and non-zero size;
* no error outputs (in the file or rendered as a traceback) and no dialog (e.g. a missing kernel);

saves a screenshot (the first figure scrolled into view) to ``results/<profile>/screenshots/<name>.png`` and stops
everything it started — browser, kernels, server — also on failure.

    python tools/browser_check.py                         # results/cpu/03_accuracy.ipynb, else any executed one
    python tools/browser_check.py results/smoke/01_training.ipynb

Needs: Chromium (Debian: ``apt-get install -y chromium``) and Playwright (``pip install -e ".[browser]"``; the
system Chromium is used, so ``playwright install`` is not needed). Exit status: 0 all checks passed, 1 a check
failed, 2 could not run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ("cpu", "03_accuracy")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class CheckError(RuntimeError):
    """Could not run the check (exit status 2)."""


# ---------------------------------------------------------------------------------------------------------------
# Which notebook
def results_root() -> Path:
    return Path(os.environ.get("GENROBUST_RESULTS") or ROOT / "results")


def notebook_facts(path: Path) -> dict:
    """What the file holds: cells, executed code cells, image / HTML-table / error outputs."""
    nb = json.loads(path.read_text())
    facts = {"cells": len(nb["cells"]), "executed": 0, "images": 0, "tables": 0, "errors": []}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        facts["executed"] += cell.get("execution_count") is not None
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                facts["errors"].append(f"{out.get('ename')}: {out.get('evalue')}")
            data = out.get("data", {})
            facts["images"] += any(k.startswith("image/") for k in data)
            html = data.get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            facts["tables"] += html.count("<table")
    return facts


def pick_notebook(arg: str | None) -> Path:
    if arg:
        path = Path(arg)
        if not path.is_file():
            raise CheckError(f"no notebook {arg}")
        return path.resolve()
    root = results_root()
    preferred = root / DEFAULT[0] / f"{DEFAULT[1]}.ipynb"
    others = sorted(p for p in root.glob("*/*.ipynb") if not p.name.startswith(".") and p != preferred)
    executed = [p for p in [preferred] + others if p.is_file() and notebook_facts(p)["executed"] > 0]
    # the default, else the same notebook of another profile, else one with figures, else any executed one
    for ok in (lambda p: p == preferred, lambda p: p.stem == DEFAULT[1], lambda p: notebook_facts(p)["images"] > 0,
               lambda p: True):
        for path in executed:
            if ok(path):
                return path.resolve()
    raise CheckError(f"no executed notebook under {root} (run e.g. `genrobust reproduce --profile smoke`) "
                     "or name one: python tools/browser_check.py results/<profile>/<name>.ipynb")


def find_chromium(arg: str | None) -> str:
    for name in ([arg] if arg else []) + [os.environ.get("CHROMIUM", "")] + list(CHROMIUM_NAMES):
        if name and (shutil.which(name) or Path(name).is_file()):
            return shutil.which(name) or name
    raise CheckError("no Chromium found; install it (Debian: apt-get install -y chromium) or pass --chromium PATH")


# ---------------------------------------------------------------------------------------------------------------
# JupyterLab server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_settings(folder: Path) -> None:
    """Throw-away user settings: render every cell (no windowing: off-screen figures would not be laid out) and no
    news / update notifications."""
    files = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
             "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
             "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                                  "checkForUpdates": False}}
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(json.dumps(content))


class Lab:
    """A JupyterLab server in its own process group, stopped (with its kernels) by :meth:`stop`."""

    def __init__(self, root_dir: Path, work: Path):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        lab_settings(work / "settings")
        env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"), "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")]))}
        self.log_path = work / "jupyterlab.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={root_dir}", "--LabApp.extension_manager=readonly",
             "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pids: set[int] = {self.proc.pid}

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 3) -> str:
        """The server log's last lines (the log lives in a temporary directory that is removed afterwards)."""
        self._log.flush()
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-n:]) or "(empty)"

    def wait_ready(self, timeout: float) -> None:
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise CheckError(f"JupyterLab exited with status {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
                self.api("/api/status")
                return
            time.sleep(0.5)
        raise CheckError(f"JupyterLab did not answer within {timeout:.0f} s: {self.log_tail()}")

    def _children(self) -> set[int]:
        try:
            import psutil
            return {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}
        except Exception:  # noqa: BLE001 - psutil missing or the server already gone
            return set()

    def kernel_executable(self) -> str:
        """The Python executable of the kernel process the server started (which environment it runs in)."""
        try:
            import psutil
            for c in psutil.Process(self.proc.pid).children(recursive=True):
                if "ipykernel" in " ".join(c.cmdline()):
                    return c.cmdline()[0]  # the venv path (exe() would resolve its symlink)
        except Exception:  # noqa: BLE001 - psutil missing or the process gone: only a fact not shown
            pass
        return "kernel process not found"

    def stop(self) -> None:
        """Shut the kernels down through the API, stop the server (SIGTERM, then SIGKILL), then any process it
        started that is still alive (by pid)."""
        self.pids |= self._children()
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for s in self.api("/api/sessions"):
                    self.api(f"/api/sessions/{s['id']}", method="DELETE")
            self.pids |= self._children()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for pid in self.pids - {self.proc.pid}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()


# ---------------------------------------------------------------------------------------------------------------
# The browser side
DOM_FACTS = """() => {
  const outs = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')];
  const imgs = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img')].map(i => {
    const r = i.getBoundingClientRect();
    return {w: r.width, h: r.height, nw: i.naturalWidth, nh: i.naturalHeight, done: i.complete};
  });
  const tables = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output table')].map(t => {
    const r = t.getBoundingClientRect();
    return {w: r.width, h: r.height, rows: t.querySelectorAll('tbody tr').length};
  });
  const tracebacks = outs.filter(o => o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr'
                                       && /Traceback \\(most recent call last\\)/.test(o.innerText)).length;
  return {cells: document.querySelectorAll('.jp-Notebook .jp-Cell').length, outputs: outs.length, imgs, tables,
          tracebacks, dialogs: [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText.slice(0, 200)),
          error_toasts: [...document.querySelectorAll('.Toastify__toast--error')].map(d => d.innerText.slice(0, 200))};
}"""


def wait_kernel_idle(lab: Lab, name: str, timeout: float) -> dict:
    t_end, last = time.time() + timeout, None
    while time.time() < t_end:
        with contextlib.suppress(Exception):
            sessions = [s for s in lab.api("/api/sessions") if s.get("path", "").endswith(name)]
            if sessions and sessions[0].get("kernel"):
                last = sessions[0]["kernel"]
                if last.get("execution_state") == "idle":
                    return last
        time.sleep(0.5)
    raise CheckError(f"the kernel did not become idle within {timeout:.0f} s (last state: "
                     f"{last and last.get('execution_state')}); server log: {lab.log_tail()}")


def check(notebook: Path, *, chromium: str, screenshot: Path, timeout: float) -> tuple[list[str], list[str]]:
    """Open ``notebook`` in JupyterLab in headless Chromium; return (failures, facts)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise CheckError("Playwright is not installed: pip install -e \".[browser]\" (or pip install playwright)") \
            from None
    static = notebook_facts(notebook)
    failures, facts = [], []
    if static["executed"] == 0:
        raise CheckError(f"{notebook} has no executed cells; run it first (genrobust reproduce)")
    failures += [f"error output in the file: {e}" for e in static["errors"]]
    with tempfile.TemporaryDirectory(prefix="browser-check-") as work:
        # JupyterLab writes beside what it opens (.ipynb_checkpoints/, autosave): it gets a copy (with the figures
        # folder, for figures linked by relative path), so the results directory is left exactly as it was
        served = Path(work) / "notebook"
        served.mkdir()
        shutil.copy2(notebook, served / notebook.name)
        if (notebook.parent / "figures").is_dir():  # figures linked by relative path (e.g. 06_report)
            shutil.copytree(notebook.parent / "figures", served / "figures")
        lab = Lab(served, Path(work))
        browser = None
        try:
            lab.wait_ready(timeout)
            specs = lab.api("/api/kernelspecs")
            default = specs["kernelspecs"][specs["default"]]["spec"]
            facts.append(f"JupyterLab on 127.0.0.1:{lab.port} ({sys.executable}); default kernel "
                         f"{specs['default']!r}: {' '.join(default['argv'][:3])}")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                js_errors: list[str] = []
                page.on("pageerror", lambda e: js_errors.append(str(e)[:200]))
                page.goto(f"{lab.base}/lab/tree/{notebook.name}?token={lab.token}", timeout=timeout * 1000)
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
                page.wait_for_function(f"document.querySelectorAll('.jp-Notebook .jp-Cell').length >= "
                                       f"{static['cells']}", timeout=timeout * 1000)
                try:
                    kernel = wait_kernel_idle(lab, notebook.name, timeout)
                    facts.append(f"kernel {kernel['name']!r} started and idle ({lab.kernel_executable()})")
                except CheckError as e:  # e.g. a missing kernel: go on, the dialog it opens is reported below
                    failures.append(str(e))
                # figures load asynchronously: wait until every <img> has decoded (or time out and report)
                with contextlib.suppress(Exception):
                    page.wait_for_function(
                        f"[...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img')]"
                        f".filter(i => i.complete && i.naturalWidth > 0).length >= {static['images']}",
                        timeout=timeout * 1000)
                page.wait_for_timeout(1000)  # let late dialogs / toasts appear
                dom = page.evaluate(DOM_FACTS)
                good_imgs = [i for i in dom["imgs"] if i["w"] > 0 and i["h"] > 0 and i["nw"] > 0 and i["done"]]
                good_tables = [t for t in dom["tables"] if t["w"] > 0 and t["h"] > 0 and t["rows"] > 0]
                facts.append(f"{dom['cells']} cells, {dom['outputs']} outputs rendered; figures: {len(good_imgs)} "
                             f"of {len(dom['imgs'])} <img> with non-zero size ({static['images']} image outputs in "
                             f"the file); tables: {len(good_tables)} of {len(dom['tables'])} rendered with rows "
                             f"({static['tables']} in the file)")
                if dom["cells"] < static["cells"]:
                    failures.append(f"only {dom['cells']} of {static['cells']} cells rendered")
                if len(good_imgs) < static["images"] or len(good_imgs) < len(dom["imgs"]):
                    failures.append(f"figures: {len(good_imgs)} rendered with non-zero size, expected "
                                    f"{max(static['images'], len(dom['imgs']))}")
                if len(good_tables) < static["tables"]:
                    failures.append(f"tables: {len(good_tables)} rendered, expected {static['tables']}")
                if dom["tracebacks"]:
                    failures.append(f"{dom['tracebacks']} error output(s) rendered")
                failures += [f"dialog open: {d!r}" for d in dom["dialogs"]]
                failures += [f"error notification: {t!r}" for t in dom["error_toasts"]]
                if js_errors:
                    facts.append(f"JavaScript errors (not counted as failures): {js_errors[:3]}")
                first = page.query_selector(".jp-Notebook .jp-OutputArea-output img")
                if first is not None:
                    first.scroll_into_view_if_needed()
                    page.wait_for_timeout(300)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                tmp = screenshot.with_name(f".{screenshot.name}.tmp.png")
                page.screenshot(path=str(tmp))
                os.replace(tmp, screenshot)
                facts.append(f"screenshot: {screenshot}")
                browser.close()
                browser = None
        finally:
            if browser is not None:
                with contextlib.suppress(Exception):
                    browser.close()
            lab.stop()
    return failures, facts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", nargs="?", default=None,
                    help="an executed notebook (default: results/cpu/03_accuracy.ipynb, else any under results/)")
    ap.add_argument("--chromium", default=None, help="Chromium executable (default: chromium on PATH)")
    ap.add_argument("--screenshot", default=None, help="default: <notebook dir>/screenshots/<name>.png")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds for each wait")
    args = ap.parse_args(argv)
    try:
        notebook = pick_notebook(args.notebook)
        chromium = find_chromium(args.chromium)
        shot = Path(args.screenshot) if args.screenshot else notebook.parent / "screenshots" / f"{notebook.stem}.png"
        print(f"browser check: {notebook} (Chromium {chromium})")
        failures, facts = check(notebook, chromium=chromium, screenshot=shot, timeout=args.timeout)
    except CheckError as e:
        print(f"browser-check: error: {e}", file=sys.stderr)
        return 2
    for f in facts:
        print(f"  {f}")
    for f in failures:
        print(f"  FAILED: {f}")
    print("browser check: " + ("passed" if not failures else f"{len(failures)} check(s) failed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
