"""Older files in today's form (genrobust.core.upgrade): a hand-written fixture of each older metrics schema
(tests/fixtures/older_metrics), a recorded config with eval.aa_* fields, and the readers that call the upgrade once;
negative controls: today's form passes unchanged, an unknown version is refused with one line."""
import copy
import json
import shutil
from pathlib import Path

import pytest

from genrobust.core import upgrade as U
from genrobust.core.config import budget_values, get_profile, to_dict
from genrobust.reporting.metrics_files import VERDICTS_NAME, load_sources, read_metrics, read_verdicts
from genrobust.reporting.sections import claims_section
from genrobust.reporting.tables import claims_table
from genrobust.store.io import ResultsError
from genrobust.reporting.verdicts import ablation_claims, notebook_verdicts

OLDER = Path(__file__).parent / "fixtures" / "older_metrics"


def _fixture(name: str) -> dict:
    return json.loads((OLDER / name).read_text())


def test_the_table_names_every_version_up_to_today():
    assert U.KNOWN_SCHEMAS == tuple(range(1, U.SCHEMA_VERSION + 1))
    assert all(U.CHANGES[v] for v in U.KNOWN_SCHEMAS)


def test_schema_1_05_renames_its_cost_model_jobs_and_reads_its_claims_as_not_established():
    rec = _fixture("v1_05_ablations.json")
    before = copy.deepcopy(rec)
    up = U.upgrade_metrics(rec, "05_ablations.json")
    assert rec == before                                                # the file as read is not changed
    assert (up["schema_version"], up["upgraded_from"]) == (U.SCHEMA_VERSION, 1)
    assert "jobs" not in up["runtime"] and up["runtime"]["estimated_jobs"] == before["runtime"]["jobs"]
    claim = up["claims"]["fig5_capacity"]
    assert claim["verdict"] == "not established"
    assert claim["why"].startswith("05_ablations.json predates the current rule and stores 1 training seed(s)")
    assert claim["older_reading"] == "supported, every comparison's bootstrap interval above 0"
    # negative control: a claim the older sweep did not test stays as it was
    assert up["claims"]["fig6_train_eps"] == before["claims"]["fig6_train_eps"]
    assert not U.written_with_verdicts(up)


def test_schema_2_04_drops_its_prose_conclusion():
    up = U.upgrade_metrics(_fixture("v2_04_generation_fid.json"), "04_generation_fid.json")
    assert "conclusion" not in up and up["upgraded_from"] == 2 and not U.written_with_verdicts(up)
    assert up["paired"] == _fixture("v2_04_generation_fid.json")["paired"]


def test_schema_3_04_keeps_its_fields_and_its_verdicts():
    rec = _fixture("v3_04_generation_fid.json")
    up = U.upgrade_metrics(rec, "04_generation_fid.json")
    assert {k: v for k, v in up.items() if k not in ("schema_version", "upgraded_from")} == \
        {k: v for k, v in rec.items() if k != "schema_version"}
    assert up["upgraded_from"] == 3 and U.written_with_verdicts(up)


def _copied(claims: dict) -> list[str]:
    """The copied verdict fields found beside a verdict_record, as 'claim: field'."""
    return [f"{key}: {f}" for key, c in claims.items() for comp in c["comparisons"] if "verdict_record" in comp
            for f in U.COPIED_VERDICT_FIELDS if f in comp]


def test_schema_4_05_drops_the_copies_beside_each_verdict_record(tmp_path):
    """Schema 5 stores 05's verdict once: the copies of a verdict_record's fields beside it are dropped on reading;
    the record, the comparison's description, an untested comparison's own verdict and the claim's decision stay;
    what the readers show is unchanged."""
    rec = _fixture("v4_05_ablations.json")
    before = copy.deepcopy(rec)
    assert len(_copied(rec["claims"])) == 5                             # negative control: the check sees them
    up = U.upgrade_metrics(rec, "05_ablations.json")
    assert rec == before and up["upgraded_from"] == 4 and U.written_with_verdicts(up)
    assert _copied(up["claims"]) == []
    tested, = up["claims"]["fig5_capacity"]["comparisons"]
    assert tested == {k: v for k, v in before["claims"]["fig5_capacity"]["comparisons"][0].items()
                      if k not in U.COPIED_VERDICT_FIELDS}
    assert up["claims"]["fig7_augmentation"] == before["claims"]["fig7_augmentation"]  # no record: its own reading
    assert {k: c["verdict"] for k, c in up["claims"].items()} == {k: c["verdict"] for k, c in before["claims"].items()}
    # the notebook's table reads the record: what it showed from the copies; a changed record shows (control)
    copied = before["claims"]["fig5_capacity"]["comparisons"][0]
    row = claims_table(up["claims"]).loc["fig5_capacity"]
    assert (row["verdict"], row["95% CI"]) == (copied["verdict"], f"[{copied['ci'][0]:+.4f}, {copied['ci'][1]:+.4f}]")
    tested["verdict_record"] = {**tested["verdict_record"], "decision": "contradicted"}
    assert claims_table(up["claims"]).loc["fig5_capacity"]["verdict"] == "contradicted"
    shutil.copy(OLDER / "v4_05_ablations.json", tmp_path / "05_ablations.json")
    capacity = next(c for c in ablation_claims(load_sources(tmp_path)["05_ablations"]) if c.claim == "fig5_capacity")
    assert [v.decision for v in capacity.subjects] == ["supported"] and capacity.stored
    assert not set(U.COPIED_VERDICT_FIELDS) & set(capacity.comparisons[0][0])


def test_verdicts_json_of_schema_1_drops_05s_copies_and_an_unknown_version_is_refused(tmp_path):
    shutil.copy(OLDER / "v1_verdicts.json", tmp_path / VERDICTS_NAME)
    raw = _fixture("v1_verdicts.json")
    assert len(_copied(raw["notebooks"]["05_ablations"]["claims"])) == 5  # negative control
    up = read_verdicts(tmp_path)
    assert (up["schema_version"], up["upgraded_from"]) == (U.VERDICTS_SCHEMA, 1)
    assert _copied(up["notebooks"]["05_ablations"]["claims"]) == []
    assert up["notebooks"]["03_accuracy"] == raw["notebooks"]["03_accuracy"] and up["provenance"] == raw["provenance"]
    today = {**raw, "schema_version": U.VERDICTS_SCHEMA}
    assert U.upgrade_verdicts(today, "v.json") is today                  # today's form passes unchanged
    (tmp_path / VERDICTS_NAME).write_text(json.dumps({**raw, "schema_version": 99}))
    with pytest.raises(ResultsError, match=r"verdicts.json: schema_version 99, which this genrobust .* does not know"
                       ) as err:
        read_verdicts(tmp_path)
    assert "\n" not in str(err.value)


def test_todays_form_passes_unchanged_and_an_unknown_version_is_refused():
    today = {**_fixture("v3_04_generation_fid.json"), "schema_version": U.SCHEMA_VERSION}
    assert U.upgrade_metrics(today, "x.json") is today and "upgraded_from" not in today
    with pytest.raises(ValueError, match=r"x.json: schema_version 99, which this genrobust .* does not know") as err:
        U.upgrade_metrics({**today, "schema_version": 99}, "x.json")
    assert "\n" not in str(err.value)


def test_the_readers_call_the_upgrade_once_and_render_the_older_reading(tmp_path):
    shutil.copy(OLDER / "v1_05_ablations.json", tmp_path / "05_ablations.json")
    shutil.copy(OLDER / "v2_04_generation_fid.json", tmp_path / "04_generation_fid.json")
    assert read_metrics(tmp_path / "05_ablations.json")["upgraded_from"] == 1
    sources = load_sources(tmp_path)
    assert sources["05_ablations"].record["runtime"]["estimated_jobs"]
    capacity = next(c for c in ablation_claims(sources["05_ablations"]) if c.claim == "fig5_capacity")
    assert capacity.decision == "not established" and not capacity.stored and capacity.subjects == ()
    assert capacity.older_reading.startswith("supported")
    row = claims_section(sources, tmp_path).table.set_index("claim").loc["fig5_capacity"]
    assert row["why"] == f"{capacity.why} (its older reading: {capacity.older_reading})"
    assert "(supported)" in row["comparisons"]  # the older comparison shows its own reading
    # 04 of schema 2 stores no verdicts and no replicates: the engine is asked, and says it cannot judge
    verdicts, how = notebook_verdicts(sources["04_generation_fid"])
    assert verdicts == [] and "cannot be judged" in how and "replicates" in how


def test_a_recorded_config_with_aa_fields_reads_as_eval_budgets():
    new = to_dict(get_profile("cpu"))["eval"]
    old = {k: v for k, v in new.items() if k != "budgets"}
    old.update(aa_apgd_iters=50, aa_targets=3, aa_fab_iters=50, aa_square_queries=500)
    up = U.upgrade_eval(old)
    assert not set(up) & set(U.AA_BUDGET_FIELDS)
    assert dict(up["budgets"]) == {"apgd_iters": 50, "targets": 3, "fab_iters": 50, "square_queries": 500}
    assert budget_values(old) == budget_values(up)
    assert U.upgrade_eval(new) is new  # negative control: today's form passes unchanged
