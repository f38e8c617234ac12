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


def _worst_by_hand(stored: dict, kind: str, eps: float) -> tuple[str, list[str]]:
    """The worst case at eps from the stored bit strings alone, without EvalRecord: every run at eps (the clean
    one too) cut to their common prefix, then AND-ed position by position."""
    c = stored["classifiers"][kind]
    runs = [r for r in c["runs"] if abs(r["eps"] - eps) < 1e-9]
    flags = [c["clean"]["robust"]] + [r["robust"] for r in runs]
    n = min(map(len, flags))
    return "".join("1" if all(f[i] == "1" for f in flags) else "0" for i in range(n)), \
        sorted({r["attack"] for r in runs}) or ["clean"]  # eps 0: no attack, the clean flags


def test_worst_case_by_hand_agrees_with_the_record_and_the_stored_results():
    """results/cpu's 03: EvalRecord.worst and the stored worst_case equal an independent AND of the stored flags."""
    stored = json.loads((ROOT / "results" / "cpu" / "03_accuracy.json").read_text())
    recs = records(stored["classifiers"])
    checked = 0
    for kind, rec in recs.items():
        for w in stored["worst_case"][kind]:
            robust, attacks = _worst_by_hand(stored, kind, w["eps"])
            mine = rec.worst(w["eps"])
            assert (w["robust"], w["n"], sorted(w["attacks"])) == (robust, len(robust), attacks)
            assert ("".join("1" if f else "0" for f in mine.flags.tolist()),
                    sorted(mine.attacks) or ["clean"]) == (robust, attacks)
            checked += 1
    assert checked >= 6  # both classifiers, at least three eps each


def test_worst_case_by_hand_sees_one_changed_flag():
    """Negative control: one attack's flag flipped from robust to broken on an image that survived every attack
    changes the worst case computed by hand, so the agreement above is not vacuous."""
    stored = json.loads((ROOT / "results" / "cpu" / "03_accuracy.json").read_text())
    w = next(w for w in stored["worst_case"]["generative"] if len(w["attacks"]) > 1)
    i = w["robust"].index("1")
    run = next(r for r in stored["classifiers"]["generative"]["runs"]
               if abs(r["eps"] - w["eps"]) < 1e-9 and len(r["robust"]) > i)
    run["robust"] = run["robust"][:i] + "0" + run["robust"][i + 1:]
    assert _worst_by_hand(stored, "generative", w["eps"])[0] != w["robust"]
