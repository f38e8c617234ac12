import json

import pytest
import torch

from genrobust.models import GenerativeClassifier, create_model
from genrobust.results import (ResultsError, append_jsonl, atomic_path, load_classifier, read_json, read_jsonl,
                               save_checkpoint, write_json)


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
    from genrobust.models import create_model
    from genrobust.results import save_checkpoint, weights_digest
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
    from genrobust.results import write_json
    umask = os.umask(0o022)
    try:
        p = write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(umask)
    assert (p.stat().st_mode & 0o777) == 0o644


def test_provenance_records_the_commit_of_the_running_code(monkeypatch):
    from genrobust import results
    head = results.git_commit()
    assert results.provenance({})["git_commit"] == results._IMPORT_COMMIT
    monkeypatch.setattr(results, "_IMPORT_COMMIT", "0" * 40)   # as if HEAD moved after this process imported us
    rec = results.provenance({})
    assert rec["git_commit"] == "0" * 40 and rec["git_commit_at_write"] == head
