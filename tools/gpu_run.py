"""The gpu profile on a lent GPU machine in two self-contained device calls (issue 37; docs/gpu-profile.md).

The GPU machines of this project (the `device` tool; /work/.library/device/README.md) have no network and no .git,
Python 3.12 with their own torch 2.11 but no papermill/ipykernel/pyautoattack/clean-fid, take at most 64 MiB of
files per call (the repo's tracked files count, ~24 MiB), start bare on every call after 30 s idle, run one command
for at most 600 s, and return at most 8 files of 16 MiB (64 MiB together). So nothing is staged between calls:
each call carries all it needs (the repo, the CIFAR-10 zip as xz, the missing packages as wheels) and runs on a
fresh machine.

  here:    python tools/gpu_run.py prepare            # .gpu_carry/: data (xz + manifest), wheels, the old engine
           python tools/gpu_run.py plan               # the two device calls, exactly as docs/gpu-profile.md types them
  call 1:  python3 tools/gpu_run.py engine --out $OUT           # canary + old-vs-new engine, timeout_s 240
  call 2:  python3 tools/gpu_run.py run --out $OUT --deadline 420  # notebooks 01-04 of the gpu profile, timeout_s 480
           (on an H100 instead: `plan --kind nvidia-h100-x1` gives the calls with the sizing that fits its rates)
  here:    python tools/gpu_run.py finish --from DIR  # unpack results/gpu, score FID/KID with notebook 04, REPORT.md

Only the standard library is imported here, so the device side runs before any wheel is installed. Every carried
file and every returned piece is checked against its sha256; a damaged or missing one is refused with one line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpu_carry"          # git-ignored; its folders are named in the device calls' `carry`
MIB = 1 << 20
CALL_LIMIT_MIB = 64                   # what one call may carry: tracked + untracked-not-ignored + carry
CARRY_BUDGET_MIB = 60                 # what we allow ourselves (issue 37): 4 MiB of slack under the limit
COMMAND_CHARS = 2000                  # the device tool's limit on one command
# The carried folders as `prepare` made them on 2026-12-06 (../shared/data/cifar10-jpeg.zip, 59.3 MiB -> xz 18.3;
# 40 wheels, pyautoattack's example model dropped; `git archive 18bdf27 lib benchmarks`), in MiB, rounded up: what
# tests/test_gpu_run.py counts where .gpu_carry is not prepared (CI). `python tools/gpu_run.py plan` counts the real.
MEASURED_CARRY_MIB = {".gpu_carry/data": 18.3, ".gpu_carry/wheels": 15.1, ".gpu_carry/old": 0.2}
RETURN_FILES, RETURN_FILE_MIB, RETURN_TOTAL_MIB = 8, 16, 64
NOTEBOOKS = ("01_training", "02_calibration", "03_accuracy", "04_generation_fid")
# notebook 04 on the device generates only: FID/KID need the 84 MB Inception weights, which stay here (finish)
DEVICE_PARAMETERS = {"04_generation_fid": {"fid": "later"}}
GENERATED = "04_generated"            # what notebook 04 saves with fid='later' (results/<profile>/04_generated/)
OLD_REV = "18bdf27"                   # the engine issue 24 is measured against
DATA_NAME = "cifar10-jpeg.zip"
PROFILE = "gpu"
# the device's packages are its own (torch 2.11 ...); what it lacks, as cp312 wheels (gpu_run_packages.txt)
PACKAGES = Path(__file__).with_name("gpu_run_packages.txt")
# what each call imports after the wheels are in: a missing one fails the call's first seconds, not its tenth minute
NEEDED_IMPORTS = ("torch", "torchvision", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "safetensors",
                  "papermill", "nbformat", "ipykernel", "jupyter_client", "pyautoattack", "cleanfid", "pytorch_fid",
                  "submitit", "tqdm", "PIL")
# The kind the calls name (the machine the sizes were measured on) and, per other kind, the overrides of the gpu
# profile that fit that kind's rates into the same deadline (docs/gpu-profile.md, "On an H100"): a fallback where
# the first kind cannot be had; the run records them (return.json, every notebook's description and provenance).
KIND = "nvidia-h200"
SIZED_FOR = {KIND: {}, "nvidia-h100-x1": {"train.epochs": 4}}
# Time limits of the two calls (seconds; the device tool's timeout_s) and the run's own deadline inside call 2,
# which leaves time to collect and return what finished (docs/gpu-profile.md has the arithmetic).
ENGINE_TIMEOUT_S, RUN_TIMEOUT_S, RUN_DEADLINE_S = 240, 480, 420
ENGINE_BUDGET_S = 120                 # call 1: no benchmark round starts after this (3 rounds always run)
# Where the device side works (a fresh machine's /tmp); the rehearsal points these elsewhere.
SITE = Path(os.environ.get("GPU_RUN_SITE", "/tmp/site"))
WORK = Path(os.environ.get("GPU_RUN_WORK", "/tmp/genrobust-gpu"))


class GpuRunError(RuntimeError):
    """One line: what is wrong and what to do."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def git_commit(root: Path = ROOT) -> str:
    """The commit as every results file records it: genrobust.store.provenance.git_commit (the one owner of the
    dirty rule), asked in a subprocess so that this script needs no import of the package. 'unknown' where that
    fails."""
    ask = "from genrobust.store.provenance import git_commit; print(git_commit())"
    got = subprocess.run([sys.executable, "-c", ask], cwd=root, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(root / "lib")))
    return got.stdout.strip().splitlines()[-1] if got.returncode == 0 and got.stdout.strip() else "unknown"


# ---------------------------------------------------------------------------------------------------------------
# here: what the two calls carry
def compress_data(src: Path, dest: Path) -> dict:
    """``src`` (the CIFAR-10 JPEG zip) as xz at ``dest`` (preset 9: ~170 MB -> ~18 MiB, since most JPEGs share one
    header); reused when ``dest`` already holds this zip. Returns {name, bytes, sha256, xz, xz_sha256}."""
    if not src.is_file():
        raise GpuRunError(f"prepare: no data zip at {src}; pass --data PATH (the CIFAR-10 JPEG zip)")
    entry = {"name": DATA_NAME, "bytes": src.stat().st_size, "sha256": sha256(src), "xz": dest.name}
    meta = dest.with_name(dest.name + ".json")
    if dest.is_file() and meta.is_file():
        old = json.loads(meta.read_text())
        if old.get("sha256") == entry["sha256"] and old.get("xz_sha256") == sha256(dest):
            return old
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with open(src, "rb") as f, lzma.open(os.fdopen(fd, "wb"), "wb", preset=9) as out:
        shutil.copyfileobj(f, out, MIB)
    os.replace(tmp, dest)
    entry["xz_sha256"] = sha256(dest)
    _atomic_write(meta, json.dumps(entry, indent=1).encode())
    return entry


def old_engine_archive(dest: Path, rev: str = OLD_REV, repo: Path = ROOT) -> dict:
    """`git archive` of ``rev``'s lib/ and benchmarks/ as a gzipped tar at ``dest`` (the device has no git)."""
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", rev], capture_output=True, text=True)
    if commit.returncode != 0:
        raise GpuRunError(f"prepare: git cannot find {rev} in {repo} ({commit.stderr.strip()}); run in a full "
                          "clone (git fetch --unshallow)")
    with open(dest, "wb") as f:
        subprocess.run(["git", "-C", str(repo), "archive", "--format=tar.gz", rev, "lib", "benchmarks"], stdout=f,
                       check=True)
    return {"rev": rev, "commit": commit.stdout.strip(), "file": dest.name, "sha256": sha256(dest)}


def prepare(data: Path, carry: Path = CARRY, *, wheels: bool = True, commit: str | None = None,
            repo: Path = ROOT) -> dict:
    """Fill ``carry`` for the two calls: data/ (the zip as xz + manifest.json, carried by both), wheels/ (both),
    old/ (call 1 only). The manifest names the commit the results will record and every file's sha256."""
    for sub in ("data", "wheels", "old"):
        (carry / sub).mkdir(parents=True, exist_ok=True)
    data_entry = compress_data(Path(data), carry / "data" / (DATA_NAME + ".xz"))
    if wheels:
        download_wheels(carry / "wheels")
    old = old_engine_archive(carry / "old" / f"engine-{OLD_REV}.tar.gz", repo=repo)
    manifest = {"commit": commit or git_commit(repo), "data": data_entry, "old_engine": old,
                "wheels": [{"file": w.name, "sha256": sha256(w)} for w in sorted((carry / "wheels").glob("*.whl"))]}
    _atomic_write(carry / "data" / "manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def download_wheels(dest: Path) -> Path:
    """The packages the GPU image lacks as cp312 manylinux wheels (PyPI reachable here), no dependencies
    resolved: gpu_run_packages.txt names every one."""
    dest.mkdir(parents=True, exist_ok=True)
    names = [l.split("#")[0].strip() for l in PACKAGES.read_text().splitlines() if l.split("#")[0].strip()]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest)]
    for plat in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "manylinux1_x86_64", "any"):
        cmd += ["--platform", plat]
    subprocess.run(cmd + names, check=True)
    for wheel in dest.glob("pyautoattack-*.whl"):
        slim_wheel(wheel, "pyautoattack/examples/")
    return dest


def slim_wheel(wheel: Path, drop_prefix: str) -> int:
    """Rewrite ``wheel`` without its members under ``drop_prefix`` and their RECORD lines. pyautoattack's wheel
    is 41 MiB, 40 of them an example model (examples/model_test.pt) that AutoAttack never loads: without it the
    wheels fit the call. Returns the bytes dropped."""
    fd, tmp = tempfile.mkstemp(dir=wheel.parent, suffix=".whl")
    os.close(fd)
    dropped = 0
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if info.filename.startswith(drop_prefix):
                dropped += info.file_size
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = b"".join(l for l in data.splitlines(keepends=True) if not l.startswith(drop_prefix.encode()))
            out.writestr(info, data)
    os.replace(tmp, wheel)
    return dropped


def sizing(kind: str) -> dict:
    """SIZED_FOR[kind]: the gpu profile's overrides on that kind of machine; an unknown kind in one line."""
    if kind not in SIZED_FOR:
        raise GpuRunError(f"no sizing for kind {kind!r}; sized for {sorted(SIZED_FOR)} (SIZED_FOR)")
    return SIZED_FOR[kind]


def plan(kind: str = KIND) -> list[dict]:
    """The two device calls as docs/gpu-profile.md types them for ``kind`` (one of SIZED_FOR): command, carry,
    timeout_s, kind. Another kind than KIND names itself to call 2, which then applies its SIZED_FOR overrides."""
    sizing(kind)  # an unknown kind refused here, before a call is typed
    sized = "" if kind == KIND else f" --kind {kind}"
    return [
        {"name": "engine", "command": "python3 tools/gpu_run.py engine --out $OUT",
         "carry": [".gpu_carry/data", ".gpu_carry/wheels", ".gpu_carry/old"], "timeout_s": ENGINE_TIMEOUT_S,
         "kind": kind},
        {"name": "run", "command": f"python3 tools/gpu_run.py run --out $OUT --deadline {RUN_DEADLINE_S}{sized}",
         "carry": [".gpu_carry/data", ".gpu_carry/wheels"], "timeout_s": RUN_TIMEOUT_S, "kind": kind},
    ]


def sized_overrides(kind: str, environ=os.environ) -> str:
    """GENROBUST_OVERRIDES for call 2 on ``kind``: SIZED_FOR[kind], with $GENROBUST_OVERRIDES (the rehearsal's
    shrink) on top; '' where both are empty. A bad $GENROBUST_OVERRIDES is the notebooks' one-line error."""
    sized, given = sizing(kind), environ.get("GENROBUST_OVERRIDES", "")
    if not sized:
        return given
    try:
        extra = json.loads(given) if given else {}
    except json.JSONDecodeError:
        return given  # not merged: every notebook refuses it in one line (pipeline.params)
    return json.dumps({**sized, **extra}) if isinstance(extra, dict) else given


def _git_lines(repo: Path, *args: str) -> list[str]:
    got = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return [l for l in got.stdout.split("\0") if l]


def carried_bytes(call: dict, repo: Path = ROOT) -> dict:
    """What one call carries, counted as the device tool counts it: tracked files + untracked files git does not
    ignore + the carry paths (a shared/ folder inside the checkout too, if any). {part: bytes}."""
    def size(paths):
        return sum((repo / p).stat().st_size for p in paths if (repo / p).is_file() and not (repo / p).is_symlink())
    tracked = _git_lines(repo, "ls-files", "-z")
    untracked = _git_lines(repo, "ls-files", "-z", "--others", "--exclude-standard")
    carry = [str(p.relative_to(repo)) for c in call["carry"] for p in sorted((repo / c).rglob("*"))
             if p.is_file()] if call["carry"] else []
    return {"tracked": size(tracked), "untracked": size(untracked), "carry": size(carry)}


def check_plan(repo: Path = ROOT, kind: str = KIND) -> list[str]:
    """Each call within the device tool's limits and our 60 MiB budget; one line per call."""
    out = []
    for call in plan(kind):
        if len(call["command"]) > COMMAND_CHARS or len(call["carry"]) > 8 or call["timeout_s"] > 600:
            raise GpuRunError(f"call {call['name']}: over the device tool's limits ({len(call['command'])} chars, "
                              f"{len(call['carry'])} carry paths, timeout_s {call['timeout_s']})")
        missing = [c for c in call["carry"] if not (repo / c).is_dir()]
        if missing:
            raise GpuRunError(f"call {call['name']}: {missing} missing; run `python tools/gpu_run.py prepare` first")
        parts = carried_bytes(call, repo)
        total = sum(parts.values())
        if total > CARRY_BUDGET_MIB * MIB:
            raise GpuRunError(f"call {call['name']}: carries {total / MIB:.1f} MiB ({parts}), over the "
                              f"{CARRY_BUDGET_MIB} MiB budget (the device limit is {CALL_LIMIT_MIB}); drop untracked "
                              "files or wheels")
        out.append(f"call {call['name']}: {total / MIB:.1f} MiB carried (tracked {parts['tracked'] / MIB:.1f}, "
                   f"untracked {parts['untracked'] / MIB:.1f}, carry {parts['carry'] / MIB:.1f}) <= "
                   f"{CARRY_BUDGET_MIB} MiB; command {len(call['command'])} chars; timeout_s {call['timeout_s']}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# device: the setup both calls share
def _log(msg: str, log=None) -> None:
    line = f"[gpu_run {time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if log is not None:
        log.write(line + "\n")
        log.flush()


def _manifest(carry: Path) -> dict:
    path = carry / "data" / "manifest.json"
    if not path.is_file():
        raise GpuRunError(f"{path}: missing; run `python tools/gpu_run.py prepare` here and carry .gpu_carry/data")
    return json.loads(path.read_text())


def setup(carry: Path = CARRY, log=None) -> dict:
    """On a fresh machine: the wheels installed into SITE (each checked against the manifest), the data unpacked
    into WORK and checked, the environment for genrobust set (data, commit, lib and SITE on the path), and every
    package the run imports found. Returns the environment for the run's subprocesses."""
    t0 = time.time()
    manifest = _manifest(carry)
    for w in manifest["wheels"]:
        path = carry / "wheels" / w["file"]
        if not path.is_file() or sha256(path) != w["sha256"]:
            raise GpuRunError(f"{path}: missing or damaged (sha256 differs); carry .gpu_carry/wheels as prepared")
    if manifest["wheels"]:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--target", str(SITE)] + [
            str(carry / "wheels" / w["file"]) for w in manifest["wheels"]]
        got = subprocess.run(cmd, capture_output=True, text=True)
        if got.returncode != 0:
            raise GpuRunError(f"pip install of the carried wheels failed: {got.stderr.strip().splitlines()[-1:]}")
    _log(f"{len(manifest['wheels'])} wheels installed into {SITE} ({time.time() - t0:.0f} s)", log)
    d = manifest["data"]
    xz, zip_path = carry / "data" / d["xz"], WORK / d["name"]
    if not xz.is_file() or sha256(xz) != d["xz_sha256"]:
        raise GpuRunError(f"{xz}: missing or damaged (sha256 differs); carry .gpu_carry/data as prepared")
    if not (zip_path.is_file() and sha256(zip_path) == d["sha256"]):
        WORK.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=WORK, prefix=f".{d['name']}.")
        with lzma.open(xz) as src, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, MIB)
        if sha256(Path(tmp)) != d["sha256"]:
            os.unlink(tmp)
            raise GpuRunError(f"{xz}: unpacks to a zip whose sha256 differs from the manifest's; prepare again")
        os.replace(tmp, zip_path)
    _log(f"data {d['name']} unpacked and checked ({d['bytes'] / MIB:.1f} MiB, sha256 {d['sha256'][:12]}; "
         f"{time.time() - t0:.0f} s so far)", log)
    path = [str(ROOT / "lib")] + ([str(SITE)] if manifest["wheels"] else []) + \
        [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # the FID Inception weights stay here (gpu_run finish scores FID/KID): any use on the device fails with one line
    env = dict(os.environ, GENROBUST_DATA=str(zip_path), GENROBUST_GIT_COMMIT=manifest["commit"],
               GENROBUST_FID_WEIGHTS=str(WORK / "no-FID-weights-on-the-device--gpu_run-finish-scores-FID-here"),
               PYTHONPATH=os.pathsep.join(path), PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    ask = ("import importlib, sys\nmissing = []\nfor m in sys.argv[1:]:\n    try: importlib.import_module(m)\n"
           "    except Exception as e: missing.append(f'{m} ({type(e).__name__}: {e})')\n"
           "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device',\n"
           "      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')\n"
           "from jupyter_client.kernelspec import KernelSpecManager\n"
           "spec = KernelSpecManager().get_kernel_spec('python3'); print('kernel python3:', spec.argv[0])\n"
           "print('MISSING', '; '.join(missing)) if missing else None\n")
    got = subprocess.run([sys.executable, "-c", ask, *NEEDED_IMPORTS], capture_output=True, text=True, env=env,
                         cwd=ROOT)
    _log(got.stdout.strip() + (f"\n{got.stderr.strip()[-2000:]}" if got.returncode else ""), log)
    if got.returncode != 0 or "MISSING" in got.stdout:
        raise GpuRunError("the run's packages are not all importable (see above); add the missing ones to "
                          "tools/gpu_run_packages.txt and prepare again")
    return env


# ---------------------------------------------------------------------------------------------------------------
# device, call 1: the engine check (also the canary for call 2: the same setup, the same packages)
def engine(out: Path, carry: Path = CARRY) -> int:
    """Setup, then benchmarks/engine_check.py: the old engine (OLD_REV, from the carried archive) against the new
    one in fp32 and bf16, alternating, with the host syncs per step; its log to ``out``/engine.log."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(out / "engine.log", "w") as log:
        env = setup(carry, log)
        old = _manifest(carry)["old_engine"]
        tar = carry / "old" / old["file"]
        if not tar.is_file() or sha256(tar) != old["sha256"]:
            raise GpuRunError(f"{tar}: missing or damaged (sha256 differs); carry .gpu_carry/old as prepared")
        tree = WORK / f"engine-{old['rev']}"
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        with tarfile.open(tar) as t:
            t.extractall(tree, filter="data")
        budget = max(30.0, ENGINE_BUDGET_S - (time.time() - t0))
        cmd = [sys.executable, "benchmarks/engine_check.py", "--old", str(tree), "--old-commit", old["commit"],
               "--budget-s", f"{budget:.0f}"] + os.environ.get("GPU_RUN_ENGINE_ARGS", "").split()
        _log(" ".join(cmd), log)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            print(line, end="", flush=True)
            log.write(line)
            log.flush()
        rc = proc.wait()
        _log(f"engine check exited {rc} after {time.time() - t0:.0f} s in all", log)
    return rc


# ---------------------------------------------------------------------------------------------------------------
# device, call 2: notebooks 01-04 under a deadline, then what finished comes back
def _done_already(results: Path, name: str, params: dict) -> bool:
    """genrobust.pipeline.notebooks.execute_notebook's skip rule (its executed notebook and a marker with the same
    parameters), read here without starting Python again: a rerun on a warm machine costs nothing."""
    marker = results / f".{name}.done.json"
    try:
        return (results / f"{name}.ipynb").is_file() and json.loads(marker.read_text()).get("parameters") == params
    except (OSError, ValueError):
        return False


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc (the notebook's kernel starts a session of its own, and its jobs
    are below it: killing the notebook's process group alone would leave them running on the GPU)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    for pid in [proc.pid] + _descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def run(out: Path, deadline_s: float = RUN_DEADLINE_S, profile: str = PROFILE, carry: Path = CARRY,
        notebooks=NOTEBOOKS, kind: str = KIND) -> int:
    """Setup, then each notebook in its own process group until ``deadline_s`` after this call started (the one
    in flight is stopped there), then results/<profile> collected into ``out`` with return.json saying which
    notebooks finished. ``kind``: the machine's, whose SIZED_FOR overrides apply. Exit code 0 only when all
    finished."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    status = {n: "not started" for n in notebooks}
    results = Path(os.environ.get("GENROBUST_RESULTS") or ROOT / "results") / profile
    overrides = sized_overrides(kind)
    with open(out / "run.log", "w") as log:
        try:
            env = setup(carry, log)
            env["GENROBUST_OVERRIDES"] = overrides
            if kind != KIND:
                _log(f"sized for {kind}: GENROBUST_OVERRIDES={overrides}", log)
            for name in notebooks:
                params = {"profile": profile, **DEVICE_PARAMETERS.get(name, {})}
                if _done_already(results, name, params):
                    status[name] = "done (already, on this machine)"
                    continue
                left = deadline_s - (time.time() - t0)
                if left <= 0:
                    status[name] = f"not started: the deadline ({deadline_s:.0f} s) had passed"
                    break
                cmd = [sys.executable, "-m", "genrobust", "notebook", name, "--profile", profile]
                for k, v in DEVICE_PARAMETERS.get(name, {}).items():
                    cmd += ["-p", k, v]
                _log(f"{name}: starting with {left:.0f} s left before the deadline: {' '.join(cmd[1:])}", log)
                t1 = time.time()
                proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                try:
                    rc = proc.wait(timeout=left)
                    status[name] = "done" if rc == 0 else f"failed (exit {rc})"
                except subprocess.TimeoutExpired:
                    _kill_tree(proc)
                    status[name] = f"stopped by the deadline ({deadline_s:.0f} s) after {time.time() - t1:.0f} s"
                _log(f"{name}: {status[name]} ({time.time() - t1:.0f} s)", log)
                if not status[name].startswith("done"):
                    break  # 02-04 need what the one before wrote
        except GpuRunError as e:
            _log(f"error: {e}", log)
        _log("notebooks: " + "; ".join(f"{n} {s}" for n, s in status.items()) + f" ({time.time() - t0:.0f} s)", log)
        meta = {"profile": profile, "status": status, "overrides": overrides, "seconds": round(time.time() - t0),
                "commit": _manifest(carry).get("commit") if (carry / "data" / "manifest.json").is_file() else None}
        try:
            pieces = collect(results, out, meta) if results.is_dir() else []
            _log(f"returned {len(pieces)} piece(s) of {results} + return.json + run.log", log)
        except GpuRunError as e:
            _log(f"error: {e}", log)
            _atomic_write(out / "return.json", json.dumps({**meta, "pieces": [], "error": str(e)}, indent=1).encode())
    finished = [n for n, s in status.items() if s.startswith("done")]
    print(f"gpu_run: {len(finished)}/{len(status)} notebooks finished; not finished: "
          f"{[n for n in status if n not in finished] or 'none'}")
    return 0 if len(finished) == len(status) else 1


def collect(results: Path, out: Path, meta: dict) -> list[Path]:
    """``results`` as a gzipped tar cut into at most RETURN_FILES - 2 pieces of RETURN_FILE_MIB (the other two slots
    are return.json and run.log); over the limits, once more without the generated images (return.json says so)."""
    meta = dict(meta)
    for drop in (None, GENERATED):
        fd, tmp = tempfile.mkstemp(suffix=".tar.gz")
        os.close(fd)
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            tar.add(results, arcname=results.name,
                    filter=lambda m, drop=drop: None if drop and f"/{drop}" in f"/{m.name}" else m)
        total = Path(tmp).stat().st_size
        piece = int(RETURN_FILE_MIB * MIB) - 4096
        n = -(-total // piece)
        if n <= RETURN_FILES - 2 and total <= (RETURN_TOTAL_MIB - 2) * MIB:
            break
        os.unlink(tmp)
        meta["dropped"] = f"{drop or 'nothing'}: {total / MIB:.1f} MiB packed is over what a call returns"
    else:
        raise GpuRunError(f"{results}: over what a call returns ({RETURN_FILES - 2} pieces of {RETURN_FILE_MIB} MiB) "
                          "even without the generated images; shrink the profile's outputs")
    pieces = []
    with open(tmp, "rb") as f:
        for i in range(n):
            p = out / f"results.tgz.{i:02d}"
            _atomic_write(p, f.read(piece))
            pieces.append(p)
    os.unlink(tmp)
    _atomic_write(out / "return.json", json.dumps({**meta, "profile_dir": results.name, "pieces": [
        {"name": p.name, "sha256": sha256(p)} for p in pieces]}, indent=1).encode())
    return pieces


# ---------------------------------------------------------------------------------------------------------------
# here: unpack what came back, score FID/KID, render the report
def unpack(returned: Path, dest: Path) -> tuple[dict, Path]:
    """Check the returned pieces against return.json, join and unpack them under ``dest``; refuses damaged pieces
    and any archive member that would land outside <profile>/. Returns (return.json, dest/<profile>)."""
    meta_path = returned / "return.json"
    if not meta_path.is_file():
        raise GpuRunError(f"{meta_path}: missing; fetch every file the device call returned")
    meta = json.loads(meta_path.read_text())
    if not meta.get("pieces"):
        raise GpuRunError(f"{meta_path}: no results came back ({meta.get('error') or meta.get('status')}); "
                          "read run.log")
    data = bytearray()
    for p in meta["pieces"]:
        path = returned / p["name"]
        if not path.is_file() or sha256(path) != p["sha256"]:
            raise GpuRunError(f"{path}: missing or damaged (sha256 differs); fetch the call's files again")
        data += path.read_bytes()
    profile_dir = meta["profile_dir"]
    with tempfile.TemporaryDirectory() as tmp:
        arch = Path(tmp) / "r.tgz"
        arch.write_bytes(data)
        with tarfile.open(arch) as tar:
            for m in tar.getmembers():
                parts = Path(m.name).parts
                if Path(m.name).is_absolute() or ".." in parts or parts[0] != profile_dir or not (m.isfile() or m.isdir()):
                    raise GpuRunError(f"returned archive member {m.name!r} is outside {profile_dir}/; not unpacked")
            shutil.rmtree(dest / profile_dir, ignore_errors=True)
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, filter="data")
    return meta, dest / profile_dir


def finish(returned: Path, results_root: Path | None = None, staging: Path | None = None,
           python: str = sys.executable) -> dict:
    """Unpack the returned pieces (under ``staging``, default runs/gpu_run/), copy <profile>/ less the generated
    images to ``results_root``/<profile>, run notebook 04 here on those images (FID/KID with its own code, the
    run's overrides), then `genrobust report`. Returns return.json's record with 'scored' and 'report' added."""
    results_root = Path(results_root or os.environ.get("GENROBUST_RESULTS") or ROOT / "results")
    staging = Path(staging or Path(os.environ.get("GENROBUST_RUNS") or ROOT / "runs") / "gpu_run")
    meta, got = unpack(returned, staging)
    profile = meta["profile_dir"]
    target = results_root / profile
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(got, target, ignore=shutil.ignore_patterns(GENERATED))
    env = dict(os.environ, GENROBUST_RESULTS=str(results_root), GENROBUST_OVERRIDES=meta.get("overrides") or "",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")])))
    here = git_commit()
    if meta.get("commit") and here.removesuffix("-dirty") != meta["commit"].removesuffix("-dirty"):
        raise GpuRunError(f"the run was made at commit {meta['commit']} and this checkout is at {here}; check out "
                          "that commit to score and report it (results/ keeps one commit)")
    if meta.get("commit"):
        env["GENROBUST_GIT_COMMIT"] = meta["commit"]
    meta["scored"] = False
    if (got / GENERATED / "generated.json").is_file():
        cmd = [python, "-m", "genrobust", "notebook", "04_generation_fid", "--profile", profile,
               "-p", "generated_from", str(got / GENERATED)]
        if subprocess.call(cmd, cwd=ROOT, env=env) != 0:
            raise GpuRunError(f"notebook 04 failed scoring {got / GENERATED}; see "
                              f"{target / '04_generation_fid.failed.ipynb'}")
        meta["scored"] = True
    meta["report"] = subprocess.call([python, "-m", "genrobust", "report", "--profile", profile], cwd=ROOT,
                                     env=env) == 0
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_run", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="fill .gpu_carry/ for the two calls (here)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / DATA_NAME))
    p.add_argument("--carry", default=str(CARRY))
    p.add_argument("--no-wheels", action="store_true", help="carry no wheels (the rehearsal in this venv)")
    p.add_argument("--commit", default=None, help="the commit the results record (default: this checkout's)")
    pl = sub.add_parser("plan", help="print the two device calls and check their sizes (here)")
    pl.add_argument("--kind", default=KIND, choices=sorted(SIZED_FOR), help=f"the calls for this kind (default {KIND})")
    e = sub.add_parser("engine", help="call 1: setup + the old-vs-new engine check (device)")
    e.add_argument("--out", required=True)
    r = sub.add_parser("run", help="call 2: setup + notebooks 01-04 under a deadline, results returned (device)")
    r.add_argument("--out", required=True)
    r.add_argument("--deadline", type=float, default=RUN_DEADLINE_S, help="seconds after the call's start")
    r.add_argument("--profile", default=PROFILE)
    r.add_argument("--kind", default=KIND, choices=sorted(SIZED_FOR),
                   help=f"the machine's kind: its sizing (SIZED_FOR) applies (default {KIND}, the profile's own)")
    f = sub.add_parser("finish", help="unpack the returned files, score FID/KID, write REPORT.md (here)")
    f.add_argument("--from", dest="returned", required=True)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "prepare":
            m = prepare(Path(args.data), Path(args.carry), wheels=not args.no_wheels, commit=args.commit)
            print(f"prepared {args.carry}: data {m['data']['bytes'] / MIB:.1f} MiB -> xz, {len(m['wheels'])} wheels, "
                  f"old engine {m['old_engine']['commit']}; commit {m['commit']}")
            if m["commit"].endswith("-dirty") or m["commit"] == "unknown":
                print(f"gpu_run: warning: the results would record commit {m['commit']}, which "
                      "tests/test_results_gpu.py refuses; commit your changes and prepare again", file=sys.stderr)
        elif args.cmd == "plan":
            print(json.dumps(plan(args.kind), indent=1))
            print("\n".join(check_plan(kind=args.kind)))
        elif args.cmd == "engine":
            return engine(Path(args.out))
        elif args.cmd == "run":
            return run(Path(args.out), args.deadline, args.profile, kind=args.kind)
        elif args.cmd == "finish":
            m = finish(Path(args.returned))
            print(f"results/{m['profile_dir']}: notebooks {m['status']}; FID/KID scored here: {m['scored']}; "
                  f"REPORT.md: {m['report']}")
    except GpuRunError as e:
        print(f"gpu_run: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
