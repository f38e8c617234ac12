"""tools/gpu_run.py on the CPU at smoke size: the data staged in parts and reassembled with checksums, the calls
fitting the device tool's limits, the returned results unpacked safely, and the device step end to end on the
smoke profile (no GPU, no network; the wheel download is the one step not run here)."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from genrobust.store import provenance

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "tools" / "gpu_run.py")
gpu_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_run)


@pytest.fixture
def inputs(tmp_path):
    """Two files of odd sizes standing in for the CIFAR-10 zip and the FID weights."""
    a, b = tmp_path / "data.zip", tmp_path / "weights.pt"
    a.write_bytes(os.urandom(5000))
    b.write_bytes(os.urandom(3100))
    return {"cifar10-jpeg.zip": a, "fid-inception.pt": b}


def _pack(tmp_path, inputs, part_mib=2048 / gpu_run.MIB):
    return gpu_run.pack(inputs, carry=tmp_path / "carry", part_mib=part_mib, commit="abc123")


def test_pack_fills_stages_and_stage_assemble_round_trip(tmp_path, inputs):
    m = _pack(tmp_path, inputs)
    assert m["commit"] == "abc123" and len(m["stages"]) == 4  # 8,100 bytes in stages of 2,048
    sizes = [sum(p.stat().st_size for p in (tmp_path / "carry" / s).iterdir()) for s in m["stages"]]
    assert sizes[:-1] == [2048] * 3 and 0 < sizes[-1] <= 2048  # every stage but the last is full
    dest = tmp_path / "dest"
    for s in m["stages"]:
        gpu_run.stage(tmp_path / "carry" / s, dest)
    out = gpu_run.assemble(m, dest)
    for name, path in inputs.items():
        assert out[name].read_bytes() == path.read_bytes()
    assert gpu_run.assemble(m, dest) == out  # a second call finds the whole files and keeps them


def test_damaged_or_missing_parts_are_refused(tmp_path, inputs):
    m = _pack(tmp_path, inputs)
    carry, dest = tmp_path / "carry", tmp_path / "dest"
    part = next((carry / m["stages"][1]).iterdir())
    good = part.read_bytes()
    part.write_bytes(b"x" + good[1:])
    with pytest.raises(gpu_run.GpuRunError, match="damaged in transfer"):
        gpu_run.stage(carry / m["stages"][1], dest)
    part.write_bytes(good)
    gpu_run.stage(carry / m["stages"][0], dest)  # stages 1-3 never arrive (the machine went back)
    with pytest.raises(gpu_run.GpuRunError, match="were not staged"):
        gpu_run.assemble(m, dest)
    for s in m["stages"][1:]:
        gpu_run.stage(carry / s, dest)
    staged = dest / Path(m["files"]["fid-inception.pt"]["parts"][0]["path"]).name
    staged.write_bytes(b"y" * staged.stat().st_size)  # damaged after its check: the whole file's sha256 catches it
    with pytest.raises(gpu_run.GpuRunError, match="does not match its sha256"):
        gpu_run.assemble(m, dest)
    assert not any(p.name.startswith(".") for p in dest.iterdir())  # nothing half-written left behind


def test_calls_fit_the_device_limits(tmp_path, inputs):
    with pytest.raises(gpu_run.GpuRunError, match="must fit one call"):
        gpu_run.pack(inputs, carry=tmp_path / "c", part_mib=60)
    _pack(tmp_path, inputs)
    calls = gpu_run.plan(tmp_path / "carry")
    assert [c["command"].split("tools/gpu_run.py ")[1].split()[0] for c in calls] == ["stage"] * 4 + ["device"]
    assert "--target /tmp/site" in calls[-1]["command"] and ".gpu_carry/wheels" in calls[-1]["carry"]
    assert all(len(c["command"]) <= 2000 and len(c["carry"]) <= 8 and c["timeout_s"] <= 600 for c in calls)
    tracked = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts
                  and not {".venv", "runs", "cache", ".gpu_carry", "__pycache__"} & set(p.parts))
    assert tracked + gpu_run.DEFAULT_PART_MIB * gpu_run.MIB <= gpu_run.CALL_LIMIT_MIB * gpu_run.MIB  # part + repo
    assert tracked <= gpu_run.REPO_MIB * gpu_run.MIB


def _results(tmp_path, profile="smoke"):
    res = tmp_path / "results" / profile
    (res / "figures").mkdir(parents=True)
    (res / "01_training.json").write_text(json.dumps({"provenance": {"git_commit": "abc123"}}))
    (res / "figures" / "f.png").write_bytes(os.urandom(3000))
    return res


def test_collect_and_finish_round_trip(tmp_path):
    res = _results(tmp_path)
    out = tmp_path / "out"
    pieces = gpu_run.collect(res, out)
    assert 1 <= len(pieces) <= gpu_run.RETURN_FILES - 2 and (out / "return.json").is_file()
    target = gpu_run.finish(out, tmp_path / "back")
    assert target == tmp_path / "back" / "smoke"
    assert (target / "figures" / "f.png").read_bytes() == (res / "figures" / "f.png").read_bytes()


def test_collect_refuses_what_a_call_cannot_return(tmp_path, monkeypatch):
    res = _results(tmp_path)
    (res / "big.bin").write_bytes(os.urandom(200_000))  # random bytes do not compress
    monkeypatch.setattr(gpu_run, "RETURN_FILE_MIB", 0.01)  # ~10 KiB pieces: far more than 6 are needed
    with pytest.raises(gpu_run.GpuRunError, match="over what a call returns"):
        gpu_run.collect(res, tmp_path / "out")


def test_finish_refuses_damage_and_members_outside_the_profile(tmp_path):
    out = tmp_path / "out"
    gpu_run.collect(_results(tmp_path), out)
    piece = out / "results.tgz.00"
    good = piece.read_bytes()
    piece.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(gpu_run.GpuRunError, match="missing or damaged"):
        gpu_run.finish(out, tmp_path / "back")
    # a well-formed return whose archive writes outside results/<profile>/
    evil = tmp_path / "evil"
    evil.mkdir()
    (tmp_path / "x.txt").write_text("x")
    with tarfile.open(evil / "a.tgz", "w:gz") as tar:
        tar.add(tmp_path / "x.txt", arcname="../escaped.txt")
    (evil / "results.tgz.00").write_bytes((evil / "a.tgz").read_bytes())
    (evil / "return.json").write_text(json.dumps({"profile_dir": "smoke", "pieces": [
        {"name": "results.tgz.00", "sha256": gpu_run.sha256(evil / "results.tgz.00")}]}))
    with pytest.raises(gpu_run.GpuRunError, match="outside smoke/"):
        gpu_run.finish(evil, tmp_path / "back")
    assert not (tmp_path / "escaped.txt").exists()


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


@pytest.mark.slow
def test_device_step_end_to_end_at_smoke(tmp_path, inputs, monkeypatch):
    """The device command as the last call runs it (assemble, reproduce, collect), here on the CPU with the smoke
    profile and notebook 01 only, then finish on 'this side'."""
    _pack(tmp_path, inputs)
    carry, dest, out = tmp_path / "carry", tmp_path / "dest", tmp_path / "out"
    for s in json.loads((carry / "manifest.json").read_text())["stages"]:
        gpu_run.stage(carry / s, dest)
    for var, sub in (("GENROBUST_RUNS", "runs"), ("GENROBUST_CACHE", "cache"), ("GENROBUST_RESULTS", "results")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    rc = gpu_run.device("smoke", out, carry=carry, dest=dest, notebooks="01_training", python=sys.executable)
    assert rc == 0, (out / "run.log").read_text()[-3000:]
    back = gpu_run.finish(out, tmp_path / "back")
    record = json.loads((back / "01_training.json").read_text())
    assert record["provenance"]["config"]["name"] == "smoke"
    assert (back / "01_training.ipynb").is_file()
