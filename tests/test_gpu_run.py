"""tools/gpu_run.py: the gpu profile's two device calls, rehearsed on the CPU.

The rehearsal (slow) runs the exact commands of docs/gpu-profile.md in a `git archive` copy of the project with no
.git, no ../shared and the data only in its carried form (a tiny CIFAR-layout JPEG zip, xz-compressed), a fresh
$OUT per call, the gpu profile shrunk by $GENROBUST_OVERRIDES and the engine check by $GPU_RUN_ENGINE_ARGS; then
`finish` in a second copy scores FID/KID from the returned images. The wheels are the one thing not carried here:
this venv has the packages. The by-hand rehearsal the way the device runs it is this test with
GPU_RUN_REHEARSAL_PYTHON (a Python 3.12 with only the device image's packages and torch 2.11.0),
GPU_RUN_REHEARSAL_WHEELS (the prepared .gpu_carry/wheels, installed by the calls with pip --no-index) and
GPU_RUN_REHEARSAL_LOGS (where the calls' logs are copied); benchmarks/logs/cpu-2026-12-06-gpu-rehearsal/ holds one.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from genrobust.data import CLASSES
from genrobust.data.synthetic import make_synthetic
from genrobust.store import provenance

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "tools" / "gpu_run.py")
gpu_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_run)
DOC = ROOT / "docs" / "gpu-profile.md"

# The gpu profile at rehearsal size: the same sections the real run sets, shrunk (tiny d_k and softmax networks,
# a handful of images everywhere; one evaluation job per classifier: each job is a process start); every key is one
# the real profile has.
SHRINK = {
    "train_path": "fused",  # the 10 d_k in one job, as on CUDA (on a CPU 'auto' trains them one job each)
    "data.val_per_class": 4, "model.name": "small_cnn", "model.width": 0.5, "train.epochs": 1,
    "train.attack_steps": 2, "train.batch_size": 16, "train.select_attack_steps": 2, "train.select_n": 4,
    "train.select_every": 1, "softmax.model": "small_cnn", "softmax.width": 1.0, "softmax.epochs": 1,
    "softmax.attack_steps": 2, "softmax.batch_size": 16, "calib.max_steps": 50, "calib.patience": 10,
    "eval.n_test": 20, "eval.n_strong": 6, "eval.eps_grid": [0.0, 0.5], "eval.strong_eps_more": [],
    "eval.steps": 3, "eval.batch_size": 10, "eval.channels_last": False, "eval.units_per_job": 10,
    "eval.budgets": [["apgd_iters", 5], ["targets", 2], ["fab_iters", 5], ["square_queries", 20]],
    "gen.n_samples": 20, "gen.n_reference": 40, "gen.batch_size": 10, "gen.kid_subsets": 2,
    "gen.kid_subset_size": 10, "gen.n_boot": 0, "gen.n_show": 2, "gen.eps": 10.0,
}
ENGINE_ARGS = "--profile smoke --train-per-class 40 --epochs 1 --repeats 1 --budget-s 0"


def _tiny_cifar_zip(path: Path, train: int = 24, test: int = 12) -> Path:
    """A CIFAR-10-layout JPEG zip of learnable synthetic images (train/<class>/*.jpg, test/<class>/*.jpg)."""
    s = make_synthetic(train, test, seed=3)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for split, xs, ys in (("train", s.train_x, s.train_y), ("test", s.test_x, s.test_y)):
            for i, (x, y) in enumerate(zip(xs, ys)):
                buf = io.BytesIO()
                Image.fromarray(x.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=90)
                zf.writestr(f"{split}/{CLASSES[int(y)]}/{i:05d}.jpg", buf.getvalue())
    return path


def _archive_copy(dest: Path) -> Path:
    """The project as `git archive` gives it (the working tree's tracked changes included via `git stash create`,
    which touches no ref): no .git, no untracked files, no ../shared beside it."""
    rev = subprocess.run(["git", "-C", str(ROOT), "stash", "create"], capture_output=True, text=True,
                         check=True).stdout.strip() or "HEAD"
    dest.mkdir(parents=True)
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    assert not (dest / ".git").exists() and not (dest.parent / "shared").exists()
    return dest


def _device_env(tmp_path: Path, out: Path, **extra) -> dict:
    """A bare machine's environment: `python3` is this venv's interpreter (the device's python3 holds torch), no
    GENROBUST_* or PYTHONPATH from this session, a fresh $OUT, /tmp paths of its own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python3").exists():  # a wrapper, not a link: a venv's python finds its site-packages by path
        py = os.environ.get("GPU_RUN_REHEARSAL_PYTHON") or sys.executable
        (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{py}" "$@"\n')
        (bin_dir / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENROBUST_", "GPU_RUN_")) and k != "PYTHONPATH"}
    out.mkdir(parents=True)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", OUT=str(out),  # each call's /tmp: a fresh machine's
               GPU_RUN_SITE=str(tmp_path / f"site-{out.name}"), GPU_RUN_WORK=str(tmp_path / f"work-{out.name}"),
               **extra)
    return env


def _returned_within_limits(out: Path) -> list[Path]:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= gpu_run.RETURN_FILES, files
    assert all(p.stat().st_size <= gpu_run.RETURN_FILE_MIB * gpu_run.MIB for p in files)
    assert sum(p.stat().st_size for p in files) <= gpu_run.RETURN_TOTAL_MIB * gpu_run.MIB
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)  # $OUT/a/b/file at most
    return files


def _returned_names(out: Path) -> set[str]:
    _, got = gpu_run.unpack(out, out.parent / f"{out.name}-unpacked")
    return {str(p.relative_to(got)) for p in got.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_rehearsal_of_both_device_calls_and_finish(tmp_path):
    device = _archive_copy(tmp_path / "device" / "genrobust")
    data = _tiny_cifar_zip(tmp_path / "cifar10-jpeg.zip")
    # here: prepare (git archive of the old engine from this checkout; no wheels: this venv has the packages)
    wheels, logs = os.environ.get("GPU_RUN_REHEARSAL_WHEELS"), os.environ.get("GPU_RUN_REHEARSAL_LOGS")
    if wheels:
        (device / ".gpu_carry" / "wheels").mkdir(parents=True)
        for w in Path(wheels).glob("*.whl"):
            shutil.copy(w, device / ".gpu_carry" / "wheels" / w.name)

    def keep(src: Path, name: str):  # the by-hand rehearsal's log
        if logs:
            Path(logs).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, Path(logs) / name)
    manifest = gpu_run.prepare(data, device / ".gpu_carry", wheels=False, commit="rehearsal0", repo=ROOT)
    assert manifest["data"]["sha256"] == gpu_run.sha256(data) and manifest["old_engine"]["commit"]
    calls = {c["name"]: c for c in gpu_run.plan()}
    doc = DOC.read_text()
    for c in calls.values():  # the doc types exactly these calls, within the tool's limits
        assert len(c["command"]) <= gpu_run.COMMAND_CHARS and len(c["carry"]) <= 8 and c["timeout_s"] <= 600
        assert _typed(c) in doc, _typed(c)
        assert all((device / p).is_dir() for p in c["carry"])

    # call 1: the engine check, on a bare machine
    out1 = tmp_path / "out1"
    got = subprocess.run(["bash", "-c", calls["engine"]["command"]], cwd=device, capture_output=True, text=True,
                         env=_device_env(tmp_path, out1, GPU_RUN_ENGINE_ARGS=ENGINE_ARGS), timeout=600)
    keep(out1 / "engine.log", "call1-engine.log")
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    log = (out1 / "engine.log").read_text()
    assert "kernel python3:" in log and "data cifar10-jpeg.zip unpacked and checked" in log
    assert log.count("new / old = ") == 2 and "host syncs per step" in log
    _returned_within_limits(out1)

    # call 2: notebooks 01-04 of the shrunk gpu profile, a fresh $OUT; the deadline is the GPU's (420 s) unless
    # the CPU is slower than that at process starts (four notebooks, their kernels and jobs: minutes on a loaded
    # 2-core machine): the command is the typed one with its deadline raised (the deadline itself is tested below)
    out2 = tmp_path / "out2"
    env2 = _device_env(tmp_path, out2, GENROBUST_OVERRIDES=json.dumps(SHRINK))
    full = calls["run"]["command"].replace(f"--deadline {gpu_run.RUN_DEADLINE_S}", "--deadline 1500")
    got = subprocess.run(["bash", "-c", full], cwd=device, capture_output=True, text=True, env=env2, timeout=1600)
    keep(out2 / "run.log", "call2-run.log")
    keep(out2 / "return.json", "call2-return.json")
    assert got.returncode == 0, (out2 / "run.log").read_text()[-4000:] + got.stderr[-2000:]
    files = _returned_within_limits(out2)
    meta = json.loads((out2 / "return.json").read_text())
    assert all(s == "done" for s in meta["status"].values()) and list(meta["status"]) == list(gpu_run.NOTEBOOKS)
    assert {p.name for p in files} >= {"return.json", "run.log", "results.tgz.00"}
    names = _returned_names(out2)
    assert {f"{n}.ipynb" for n in gpu_run.NOTEBOOKS} | {"04_generated/images.pt"} <= names
    assert "04_generation_fid.json" not in names  # FID/KID were not scored there

    # here: finish in another copy (no .git either: the commit comes from the environment, as the run's)
    here = _archive_copy(tmp_path / "here" / "genrobust")
    env_here = {k: v for k, v in os.environ.items() if not k.startswith("GENROBUST_") and k != "PYTHONPATH"}
    env_here.update(GENROBUST_GIT_COMMIT="rehearsal0", PYTHONPATH=str(here / "lib"), GENROBUST_DATA=str(data))
    got = subprocess.run([sys.executable, "tools/gpu_run.py", "finish", "--from", str(out2)], cwd=here,
                         capture_output=True, text=True, env=env_here, timeout=600)
    if logs:
        (Path(logs) / "finish.log").write_text(got.stdout + got.stderr)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    res = here / "results" / "gpu"
    rec = json.loads((res / "04_generation_fid.json").read_text())
    assert rec["provenance"]["config"]["gen"]["n_samples"] == SHRINK["gen.n_samples"]  # the run's overrides
    assert len(rec["cells"]) == 8 and all(c["fid"] > 0 and c["kid"] is not None for c in rec["cells"])
    assert rec["generated_on"]["provenance"]["git_commit"] == "rehearsal0"
    assert (res / "REPORT.md").is_file() and not (res / gpu_run.GENERATED).exists()
    for n in gpu_run.NOTEBOOKS:
        assert json.loads((res / f"{n}.json").read_text())["provenance"]["git_commit"] == "rehearsal0"

    # the deadline (01-02 already done, 03 stopped, 04 never started, what finished returned) is
    # test_the_deadline_stops_the_notebook_in_flight_and_returns_what_finished, with the device side stubbed


def _typed(call: dict) -> str:
    """A call as docs/gpu-profile.md types it for the device tool."""
    return (f'run(command="{call["command"]}", carry={json.dumps(call["carry"])}, timeout_s={call["timeout_s"]}, '
            f'kind="{call["kind"]}")')


def test_every_kinds_calls_are_typed_in_the_doc_within_the_limits():
    """The H200's calls and the H100 fallback's (plan(kind)); an unknown kind is refused in one line."""
    doc = DOC.read_text()
    for kind in gpu_run.SIZED_FOR:
        calls = gpu_run.plan(kind)
        assert [c["name"] for c in calls] == ["engine", "run"] and {c["kind"] for c in calls} == {kind}
        for c in calls:
            assert len(c["command"]) <= gpu_run.COMMAND_CHARS and len(c["carry"]) <= 8 and c["timeout_s"] <= 600
            assert _typed(c) in doc, _typed(c)
        assert ("--kind" in calls[1]["command"]) == (kind != gpu_run.KIND)
    with pytest.raises(gpu_run.GpuRunError, match="no sizing for kind 'nvidia-a100'"):
        gpu_run.plan("nvidia-a100")


def test_the_h100_sizing_reaches_the_notebooks_and_keeps_the_issues_n(monkeypatch):
    """sized_overrides: the kind's overrides with $GENROBUST_OVERRIDES (the rehearsal's shrink) on top; the H200 adds
    none. Through the notebooks' own reader, the H100's gives 4 epochs and the n the issue asks for."""
    from genrobust.pipeline.params import OVERRIDES_ENV, notebook_profile
    h100 = "nvidia-h100-x1"
    assert gpu_run.sized_overrides(gpu_run.KIND, {}) == "" and gpu_run.SIZED_FOR[gpu_run.KIND] == {}
    assert gpu_run.sized_overrides(gpu_run.KIND, {OVERRIDES_ENV: '{"eval.n_test": 20}'}) == '{"eval.n_test": 20}'
    both = json.loads(gpu_run.sized_overrides(h100, {OVERRIDES_ENV: '{"train.epochs": 1, "eval.n_test": 20}'}))
    assert both == {"train.epochs": 1, "eval.n_test": 20}  # the environment's win
    assert gpu_run.sized_overrides(h100, {OVERRIDES_ENV: "{bad"}) == "{bad"  # left for the notebooks to refuse
    monkeypatch.setenv(OVERRIDES_ENV, gpu_run.sized_overrides(h100, {}))
    p, gpu = notebook_profile("01_training", {"profile": "gpu"}), notebook_profile("03_accuracy", {"profile": "gpu"})
    assert p.train.epochs == 4 and gpu.train.epochs == 4 and OVERRIDES_ENV in p.description
    assert (gpu.eval.n_test, gpu.eval.n_strong, gpu.gen.n_samples) == (2000, 250, 2050)
    assert 0.5 in (gpu.eval.strong_eps, *gpu.eval.strong_eps_more) and gpu.model.width == 0.5


def test_run_on_the_h100_gives_its_sizing_to_every_notebook_and_return_json(tmp_path, monkeypatch):
    """run(kind=...) with the device side stubbed (setup, the notebook processes): each notebook's environment and
    return.json carry the H100's overrides; the default kind carries the environment's as they are."""
    seen = []

    class Done:
        def __init__(self, cmd, env, **kw):
            seen.append(env.get("GENROBUST_OVERRIDES"))

        def wait(self, timeout=None):
            return 0
    monkeypatch.setattr(gpu_run, "setup", lambda carry, log=None: dict(os.environ))
    monkeypatch.setattr(gpu_run.subprocess, "Popen", Done)
    monkeypatch.setenv("GENROBUST_RESULTS", str(tmp_path / "results"))
    (tmp_path / "results" / "gpu").mkdir(parents=True)  # what the notebooks would have written: nothing here
    monkeypatch.delenv("GENROBUST_OVERRIDES", raising=False)
    assert gpu_run.run(tmp_path / "out", carry=tmp_path / "carry", kind="nvidia-h100-x1") == 0
    assert seen == ['{"train.epochs": 4}'] * len(gpu_run.NOTEBOOKS)
    assert json.loads((tmp_path / "out" / "return.json").read_text())["overrides"] == '{"train.epochs": 4}'
    assert "sized for nvidia-h100-x1" in (tmp_path / "out" / "run.log").read_text()
    seen.clear()
    assert gpu_run.run(tmp_path / "out2", carry=tmp_path / "carry") == 0  # negative control: the H200, no overrides
    assert seen == [""] * len(gpu_run.NOTEBOOKS)


def test_the_deadline_stops_the_notebook_in_flight_and_returns_what_finished(tmp_path, monkeypatch):
    """Call 2 on a warm machine where 01-02 ran (their markers written by genrobust's own execute_notebook, papermill
    stubbed), 03 still running at the deadline: 03 is stopped with its process tree, 04 not started, exit 1;
    return.json and the returned pieces hold 01-02's files and name 03-04. (That the real tree dies:
    test_the_deadline_kills_the_notebooks_whole_process_tree.)"""
    import papermill
    from genrobust.pipeline import notebooks as nb
    results = tmp_path / "results" / "gpu"

    def fake_papermill(src, dst, **kw):
        Path(dst).write_text("{}")
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill)
    for name in ("01_training", "02_calibration"):
        nb.execute_notebook(name, "gpu", gpu_run.DEVICE_PARAMETERS.get(name), out_dir=results)
        (results / f"{name}.json").write_text("{}")
    killed, started = [], []

    class StillRunning:
        pid = -1

        def __init__(self, cmd, **kw):
            started.append(cmd[cmd.index("notebook") + 1])

        def wait(self, timeout=None):  # with a timeout: the deadline came first (at once here)
            if timeout is not None:
                raise subprocess.TimeoutExpired("notebook", timeout)
            return -9
    monkeypatch.setattr(gpu_run, "setup", lambda carry, log=None: dict(os.environ))
    monkeypatch.setattr(gpu_run.subprocess, "Popen", StillRunning)
    monkeypatch.setattr(gpu_run, "_kill_tree", lambda proc: killed.append(proc))
    monkeypatch.setenv("GENROBUST_RESULTS", str(results.parent))
    out = tmp_path / "out"
    assert gpu_run.run(out, deadline_s=60, carry=tmp_path / "carry") == 1
    meta = json.loads((out / "return.json").read_text())
    assert started == ["03_accuracy"] and len(killed) == 1
    assert meta["status"]["01_training"].startswith("done (already") and meta["status"]["02_calibration"].startswith(
        "done (already")
    assert meta["status"]["03_accuracy"].startswith("stopped by the deadline")
    assert meta["status"]["04_generation_fid"] == "not started"
    names = _returned_names(out)
    assert {"01_training.ipynb", "02_calibration.json"} <= names and "03_accuracy.json" not in names
    _returned_within_limits(out)


def test_the_calls_carry_at_most_60_mib_each():
    """Counted as the device tool counts a call: this checkout's tracked and untracked-not-ignored files plus the
    carried folders; where .gpu_carry is not prepared here (CI), with the sizes measured when it was
    (gpu_run.MEASURED_CARRY_MIB)."""
    for call in gpu_run.plan():
        parts = gpu_run.carried_bytes(call, ROOT)
        carry = parts["carry"] if all((ROOT / c).is_dir() for c in call["carry"]) else \
            sum(gpu_run.MEASURED_CARRY_MIB[c] for c in call["carry"]) * gpu_run.MIB
        assert parts["tracked"] + parts["untracked"] + carry <= gpu_run.CARRY_BUDGET_MIB * gpu_run.MIB, (call, parts)
    assert set(gpu_run.MEASURED_CARRY_MIB) == {c for call in gpu_run.plan() for c in call["carry"]}


def test_carry_count_sees_untracked_files(tmp_path):
    """Negative control of the count: an untracked, not ignored file of 1 MiB in a repo is counted; an ignored one
    and one in .git are not."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("ignored.bin\n")
    (tmp_path / "a.txt").write_text("a")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    (tmp_path / "new.bin").write_bytes(b"\0" * gpu_run.MIB)
    (tmp_path / "ignored.bin").write_bytes(b"\0" * gpu_run.MIB)
    parts = gpu_run.carried_bytes({"carry": []}, tmp_path)
    assert parts["untracked"] == gpu_run.MIB and parts["tracked"] == 1 + len("ignored.bin\n")


def test_the_doc_holds_no_staging():
    doc = DOC.read_text()
    assert "stage-" not in doc and "stage dir" not in doc  # the old staged plan is gone from the doc and the code
    assert not hasattr(gpu_run, "stage")


def _results(tmp_path, profile="smoke"):
    res = tmp_path / "results" / profile
    (res / "figures").mkdir(parents=True)
    (res / "01_training.json").write_text(json.dumps({"provenance": {"git_commit": "abc123"}}))
    (res / "figures" / "f.png").write_bytes(os.urandom(3000))
    return res


def test_collect_and_unpack_round_trip(tmp_path):
    res = _results(tmp_path)
    out = tmp_path / "out"
    pieces = gpu_run.collect(res, out, {"status": {"01_training": "done"}})
    assert 1 <= len(pieces) <= gpu_run.RETURN_FILES - 2 and (out / "return.json").is_file()
    meta, got = gpu_run.unpack(out, tmp_path / "back")
    assert got == tmp_path / "back" / "smoke" and meta["status"] == {"01_training": "done"}
    assert (got / "figures" / "f.png").read_bytes() == (res / "figures" / "f.png").read_bytes()


def test_collect_drops_the_generated_images_before_failing(tmp_path, monkeypatch):
    res = _results(tmp_path)
    (res / gpu_run.GENERATED).mkdir()
    (res / gpu_run.GENERATED / "images.pt").write_bytes(os.urandom(200_000))  # random bytes do not compress
    monkeypatch.setattr(gpu_run, "RETURN_FILE_MIB", 0.01)  # ~10 KiB pieces: the images need far more than 6
    out = tmp_path / "out"
    gpu_run.collect(res, out, {})
    meta, got = gpu_run.unpack(out, tmp_path / "back")
    assert "over what a call returns" in meta["dropped"] and not (got / gpu_run.GENERATED).exists()
    (res / "big.bin").write_bytes(os.urandom(200_000))  # now the rest alone is too large too
    with pytest.raises(gpu_run.GpuRunError, match="even without the generated images"):
        gpu_run.collect(res, tmp_path / "out2", {})


def test_unpack_refuses_damage_and_members_outside_the_profile(tmp_path):
    out = tmp_path / "out"
    gpu_run.collect(_results(tmp_path), out, {})
    piece = out / "results.tgz.00"
    good = piece.read_bytes()
    piece.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(gpu_run.GpuRunError, match="missing or damaged"):
        gpu_run.unpack(out, tmp_path / "back")
    evil = tmp_path / "evil"
    evil.mkdir()
    (tmp_path / "x.txt").write_text("x")
    with tarfile.open(evil / "a.tgz", "w:gz") as tar:
        tar.add(tmp_path / "x.txt", arcname="../escaped.txt")
    (evil / "results.tgz.00").write_bytes((evil / "a.tgz").read_bytes())
    (evil / "return.json").write_text(json.dumps({"profile_dir": "smoke", "pieces": [
        {"name": "results.tgz.00", "sha256": gpu_run.sha256(evil / "results.tgz.00")}]}))
    with pytest.raises(gpu_run.GpuRunError, match="outside smoke/"):
        gpu_run.unpack(evil, tmp_path / "back")
    assert not (tmp_path / "escaped.txt").exists()
    (evil / "return.json").write_text(json.dumps({"profile_dir": "smoke", "pieces": [], "error": "boom"}))
    with pytest.raises(gpu_run.GpuRunError, match="no results came back"):
        gpu_run.unpack(evil, tmp_path / "back")


def test_setup_refuses_damaged_carry(tmp_path, monkeypatch):
    data = _tiny_cifar_zip(tmp_path / "d.zip", train=1, test=1)
    carry = tmp_path / "carry"
    gpu_run.prepare(data, carry, wheels=False, commit="abc", repo=ROOT)
    xz = carry / "data" / (gpu_run.DATA_NAME + ".xz")
    good = xz.read_bytes()
    xz.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    monkeypatch.setattr(gpu_run, "WORK", tmp_path / "work")
    with pytest.raises(gpu_run.GpuRunError, match="missing or damaged"):
        gpu_run.setup(carry)
    xz.write_bytes(good)
    (carry / "data" / "manifest.json").unlink()
    with pytest.raises(gpu_run.GpuRunError, match="run `python tools/gpu_run.py prepare`"):
        gpu_run.setup(carry)


def test_compressed_data_is_reused_and_unpacks_byte_identical(tmp_path):
    import lzma
    data = _tiny_cifar_zip(tmp_path / "d.zip", train=2, test=1)
    dest = tmp_path / "c" / "x.xz"
    dest.parent.mkdir()
    first = gpu_run.compress_data(data, dest)
    mtime = dest.stat().st_mtime_ns
    assert gpu_run.compress_data(data, dest) == first and dest.stat().st_mtime_ns == mtime  # reused, not redone
    assert lzma.decompress(dest.read_bytes()) == data.read_bytes()


def test_slim_wheel_drops_the_example_model_and_its_record_lines(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/__init__.py", "x = 1\n")
        z.writestr("pkg/examples/model.pt", b"\0" * 5000)
        z.writestr("pkg-1.0.dist-info/RECORD", "pkg/__init__.py,sha256=a,6\npkg/examples/model.pt,sha256=b,5000\n")
    assert gpu_run.slim_wheel(wheel, "pkg/examples/") == 5000
    with zipfile.ZipFile(wheel) as z:
        assert z.namelist() == ["pkg/__init__.py", "pkg-1.0.dist-info/RECORD"]
        assert "examples" not in z.read("pkg-1.0.dist-info/RECORD").decode()


def test_commit_comes_from_the_environment_without_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.COMMIT_ENV, "abc123-dirty")
    assert provenance.git_commit(tmp_path) == "abc123-dirty"  # tmp_path is no git checkout
    monkeypatch.delenv(provenance.COMMIT_ENV)
    assert provenance.git_commit(tmp_path) == "unknown"


def test_env_overrides_reach_every_notebook_profile_and_bad_ones_fail(monkeypatch):
    from genrobust.core.config import ConfigError
    from genrobust.pipeline.params import OVERRIDES_ENV, notebook_profile
    monkeypatch.setenv(OVERRIDES_ENV, json.dumps({"train.epochs": 1, "eval.n_test": 20}))
    for nb in ("01_training", "03_accuracy"):  # 03 declares no epochs parameter, and still sees the override
        p = notebook_profile(nb, {"profile": "gpu"})
        assert p.train.epochs == 1 and p.eval.n_test == 20 and OVERRIDES_ENV in p.description
    assert notebook_profile("01_training", {"profile": "gpu", "epochs": 3}).train.epochs == 3  # parameters win
    monkeypatch.delenv(OVERRIDES_ENV)
    assert notebook_profile("03_accuracy", {"profile": "gpu"}).train.epochs == 6  # negative control: unset
    for bad, msg in (("{not json", "not JSON"), ('[1]', "dotted config keys"), ('{"train": {"epochs": 1}}',
                     "dotted config keys"), ('{"train.epoch": 1}', "unknown key"), ('{"epochs": 1}', "unknown key")):
        monkeypatch.setenv(OVERRIDES_ENV, bad)
        with pytest.raises(ConfigError, match=msg):
            notebook_profile("01_training", {"profile": "gpu"})


def test_generated_images_saved_there_load_here_and_refuse_mismatch(tmp_path):
    import torch
    from genrobust.core.config import ConfigError, apply_overrides, get_profile
    from genrobust.data.splits import prepare_data
    from genrobust.measure.generate import starting_images
    from genrobust.pipeline import generation
    from genrobust.store.io import ResultsError, save_torch
    p = apply_overrides(get_profile("smoke"), {"gen.n_samples": 6})
    data = prepare_data(p.data, progress=False)
    g = starting_images(p.gen, data)
    for name in ("generative", "softmax"):
        for kind in ("samples", "counterfactuals"):
            for pgd in p.gen.pgd_configs:
                g.images[(kind, name, (int(pgd[0]), float(pgd[1])))] = torch.randint(0, 256, (6, 3, 32, 32)) / 255.0
    g.checks = [{"kind": "samples", "classifier": "generative", "steps": 7, "step_size": 1.0, "target_rate": 1.0}]
    paths = {n: str(save_torch(tmp_path / f"{n}.pt", {"state": {"w": torch.full((2,), float(i))}}))
             for i, n in enumerate(("generative", "softmax"))}
    out = generation.save_generated(p, data, g, paths, tmp_path / "04_generated")
    back, meta = generation.load_generated(p, data, out)
    assert back.images.keys() == g.images.keys()
    assert all(torch.equal(back.images[k], g.images[k]) for k in g.images)  # uint8 / 255 round-trips exactly
    assert torch.equal(back.seeds, g.seeds) and back.checks == g.checks and set(meta["classifiers"]) == set(paths)
    with pytest.raises(ConfigError, match="another gen config"):
        generation.load_generated(apply_overrides(p, {"gen.n_samples": 8}), data, out)
    blob = bytearray((out / "images.pt").read_bytes())
    blob[len(blob) // 2] ^= 1
    (out / "images.pt").write_bytes(bytes(blob))
    with pytest.raises(ResultsError, match="damaged"):
        generation.load_generated(p, data, out)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, killed but not yet reaped by its parent, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")
def test_the_deadline_kills_the_notebooks_whole_process_tree(tmp_path):
    """Call 2's deadline: the notebook in flight is killed with everything below it, including a grandchild in a
    session of its own (as a Jupyter kernel is), which killing the notebook's process group alone would leave
    running on the GPU. Negative control: a process outside the tree is left alone."""
    pids = tmp_path / "pids"
    script = (f"import os, subprocess, time\n"
              f"k = subprocess.Popen(['setsid', 'sleep', '300'])\n"
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{k.pid}}')\n"
              f"time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    outside = subprocess.Popen(["sleep", "300"])
    try:
        for _ in range(200):
            if pids.is_file() and len(pids.read_text().split()) == 2:
                break
            subprocess.run(["sleep", "0.05"])
        parent, kernel = map(int, pids.read_text().split())
        assert kernel in gpu_run._descendants(proc.pid) and os.getsid(kernel) != os.getsid(parent)
        gpu_run._kill_tree(proc)
        for _ in range(100):
            if not _alive(kernel):
                break
            subprocess.run(["sleep", "0.05"])
        assert not _alive(parent) and not _alive(kernel)
        assert _alive(outside.pid)
    finally:
        outside.kill()
        outside.wait()
