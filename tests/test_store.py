import json
import subprocess
from pathlib import Path

import pytest
import torch

from genrobust.core.config import apply_overrides, config_hash, get_profile
from genrobust.core.models import GenerativeClassifier, create_model
from genrobust.store import provenance as prov
from genrobust.store import runs
from genrobust.store.checkpoints import load_classifier, load_model, save_checkpoint, weights_digest
from genrobust.store.io import ResultsError, append_jsonl, atomic_path, read_json, read_jsonl, write_json
from genrobust.training.loop import BestCheckpoint, TrainingRun, resume
from genrobust.training.steppers import RunSGD


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert read_json(target) == {"a": 1}  # previous content intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temp files left


def test_jsonl_survives_a_truncated_last_line(tmp_path):
    log = tmp_path / "m.jsonl"
    append_jsonl(log, {"epoch": 1})
    append_jsonl(log, {"epoch": 2})
    with open(log, "a") as fh:
        fh.write('{"epoch": 3, "lo')  # a kill in the middle of a write
    assert [r["epoch"] for r in read_jsonl(log)] == [1, 2]


def test_read_json_errors(tmp_path):
    with pytest.raises(ResultsError, match="no such results file"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultsError, match="corrupt JSON"):
        read_json(bad)


def test_load_classifier_softmax_and_generative(tmp_path):
    torch.manual_seed(0)
    soft = create_model("small_cnn", 10, 1.0).eval()
    save_checkpoint(tmp_path / "s.pt", kind="softmax", state={"model": soft.state_dict()},
                    config={"name": "small_cnn", "width": 1.0, "num_outputs": 10})
    models = [create_model("small_cnn", 1, 0.5).eval() for _ in range(10)]
    c = torch.linspace(-1, 1, 10)
    save_checkpoint(tmp_path / "g.pt", kind="generative", state={"models": [m.state_dict() for m in models], "c": c},
                    config={"name": "small_cnn", "width": 0.5})
    x = torch.rand(3, 3, 32, 32)
    s = load_classifier(tmp_path / "s.pt")
    g = load_classifier(tmp_path / "g.pt")
    assert isinstance(g, GenerativeClassifier) and not g.training and not s.training
    with torch.no_grad():
        assert torch.allclose(s(x), soft(x), atol=1e-6)
        assert torch.allclose(g(x), GenerativeClassifier(models, c).eval()(x), atol=1e-6)
        assert g(x).shape == s(x).shape == (3, 10)
    assert not any(p.requires_grad for p in g.parameters())  # frozen: attacks take input gradients only


def test_load_classifier_bad_files(tmp_path):
    with pytest.raises(ResultsError, match="no such checkpoint"):
        load_classifier(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ResultsError, match="unreadable checkpoint"):
        load_classifier(junk)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ResultsError, match="not a genrobust checkpoint"):
        load_classifier(tmp_path / "foreign.pt")


def test_weights_digest_tracks_weights_not_file_bytes(tmp_path):
    torch.manual_seed(0)
    m = create_model("small_cnn", 1, 0.5)
    a = save_checkpoint(tmp_path / "a.pt", kind="binary", state=m.state_dict(), config={"x": 1})
    b = save_checkpoint(tmp_path / "b.pt", kind="binary", state=m.state_dict(), config={"x": 2}, note="other")
    assert weights_digest(a) == weights_digest(b) and len(weights_digest(a)) == 16
    with torch.no_grad():
        next(m.parameters()).view(-1)[0] += 1e-6  # one weight, one ulp-scale change
    c = save_checkpoint(tmp_path / "c.pt", kind="binary", state=m.state_dict(), config={"x": 1})
    assert weights_digest(c) != weights_digest(a)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        p = write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(umask)
    assert (p.stat().st_mode & 0o777) == 0o644


def test_provenance_records_the_commit_of_the_running_code(monkeypatch):
    head = prov.git_commit()
    assert prov.provenance({})["git_commit"] == prov._IMPORT_COMMIT
    monkeypatch.setattr(prov, "_IMPORT_COMMIT", "0" * 40)   # as if HEAD moved after this process imported us
    rec = prov.provenance({})
    assert rec["git_commit"] == "0" * 40 and rec["git_commit_at_write"] == head


def test_rewritten_results_keep_the_commit_clean_but_code_changes_do_not(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(git[:5] + ["init", "-q", str(tmp_path)], check=True)
    (tmp_path / "results" / "cpu").mkdir(parents=True)
    (tmp_path / "results" / "cpu" / "01.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "c"], check=True)
    (tmp_path / "results" / "cpu" / "01.json").write_text('{"new": 1}')  # a notebook rewrote its results
    assert not prov.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert prov.git_commit(tmp_path).endswith("-dirty")


def test_untracked_code_makes_the_commit_dirty_but_other_untracked_files_do_not(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(git[:5] + ["init", "-q", str(tmp_path)], check=True)
    (tmp_path / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "lib" / "pkg" / "a.py").write_text("x = 1\n")
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "c"], check=True)
    (tmp_path / "notes.txt").write_text("scratch")          # negative control: not code a run imports
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "new.json").write_text("{}")
    assert not prov.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "lib" / "pkg" / "new_module.py").write_text("y = 2\n")  # a run may import it: not in the commit
    assert prov.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "lib" / "pkg" / "new_module.py").unlink()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "07_new.py").write_text("")
    assert prov.git_commit(tmp_path).endswith("-dirty")


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints written before the package restructuring (tests/fixtures/legacy_checkpoints, made by its
# make_fixture.py with the code of commit 494c046) load with the one loader, give the same outputs, and keep their
# run keys, so runs/ directories of earlier sessions are still found and resumed.
LEGACY = Path(__file__).parent / "fixtures" / "legacy_checkpoints"


def test_legacy_checkpoints_load_and_give_the_same_outputs():
    ref = torch.load(LEGACY / "outputs.pt")
    keys = json.loads((LEGACY / "keys.json").read_text())
    for kind in ("generative", "softmax"):
        model = load_classifier(LEGACY / f"{kind}.pt")
        with torch.no_grad():
            assert torch.allclose(model(ref["x"]), ref[kind], atol=1e-6), kind
        assert weights_digest(LEGACY / f"{kind}.pt") == keys["weights_sha256"][f"{kind}.pt"]
    d0 = load_model(LEGACY / "binary_best.pt")
    assert d0(ref["x"]).shape == (4, 1) and not d0.training
    assert not any(p.requires_grad for p in d0.parameters())
    with pytest.raises(ResultsError, match="not a classifier"):
        load_classifier(LEGACY / "binary_best.pt")


def test_legacy_resume_point_loads_into_the_training_loop():
    model = create_model("small_cnn", 1, 0.5)
    run = TrainingRun(run_dir=None, run_config={}, label="d_0", model=model, generator=torch.Generator(),
                      make_batches=None, steps_per_epoch=1, cfg=get_profile("smoke").train, base_lr=0.05, epochs=1,
                      checkpoint=BestCheckpoint("binary", {}))
    resume(LEGACY / "binary_last.pt", run)
    saved = torch.load(LEGACY / "binary_last.pt", weights_only=False)
    assert (run.start_epoch, run.best_epoch, run.step) == (saved["epoch"] + 1, saved["best_epoch"],
                                                           saved["scheduler"]["last_epoch"])
    assert all(torch.equal(v, saved["model"][k]) for k, v in model.state_dict().items())
    opt = RunSGD(run)  # the per-class stepper's optimizer, resumed from the run's optimizer state
    assert len(opt.state) > 0  # momentum buffers restored


def test_run_keys_are_unchanged():
    keys = json.loads((LEGACY / "keys.json").read_text())
    p = apply_overrides(get_profile("smoke"), keys["overrides"])
    assert [config_hash(runs.binary_run_config(p, k)) for k in range(10)] == keys["binary_run_hashes"]
    assert config_hash(runs.softmax_run_config(p)) == keys["softmax_run_hash"]
    assert config_hash(runs.classifier_run_config(p)) == keys["classifier_run_hash"]
