"""The typed evaluation record (genrobust.measure.record): the paper's run at eps and the worst case per example,
checked by hand on a small stored record, and against results/cpu's stored worst cases."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrobust.measure.record import EvalRecord, records

ROOT = Path(__file__).resolve().parents[1]


def _run(attack, eps, role, robust):
    return {"attack": attack, "eps": eps, "n": len(robust), "role": role, "robust": robust, "steps": 5}


REC = {"classifier": "generative", "n": 6, "clean": {"robust": "111110"},
       "runs": [_run("eq11_12", 0.5, "paper", "111000"), _run("apgd-ce", 0.5, "strong", "1011"),
                _run("square", 0.5, "strong", "1110"), _run("eq11_12", 1.0, "paper", "100000")]}


def test_paper_run_and_worst_case_by_hand():
    r = EvalRecord.from_dict(REC)
    assert r.paper_run(0.5).robust == "111000" and r.paper_run(0.25) is None
    assert r.paper_flags(0).tolist() == [True] * 5 + [False]
    with pytest.raises(KeyError, match="no run of the paper's attack at eps 0.25"):
        r.paper_flags(0.25)
    w = r.worst(0.5)  # common prefix 4: clean 1111 & 1110 & 1011 & 1110 = 1010
    assert (w.n, w.flags.tolist(), w.attacks) == (4, [True, False, True, False], ("apgd-ce", "eq11_12", "square"))
    only = r.worst(0.5, ["eq11_12"])  # negative control: a subset of attacks breaks fewer examples
    assert (only.n, only.accuracy) == (6, 0.5)
    assert r.eps_values() == [0.0, 0.5, 1.0] and r.eps_values(("strong",)) == [0.0, 0.5]
    assert r.worst(0).accuracy == pytest.approx(5 / 6)  # eps 0: the clean accuracy
    assert r.paper_run(0.5).to_dict() == REC["runs"][0]  # the stored form round trips


def test_worst_case_agrees_with_the_stored_results():
    stored = json.loads((ROOT / "results" / "cpu" / "03_accuracy.json").read_text())
    for kind, rec in records(stored["classifiers"]).items():
        for w in stored["worst_case"][kind]:
            mine = rec.worst(w["eps"]).to_dict()
            assert (mine["robust"], mine["n"], mine["attacks"]) == (w["robust"], w["n"], w["attacks"])
