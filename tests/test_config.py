import dataclasses
import re

import pytest

from genrobust.core import models
from genrobust.core.config import (PROFILES, ConfigError, ModelConfig, SoftmaxConfig, apply_overrides, config_hash,
                                   from_dict, get_profile, to_dict)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_round_trip(name):
    p = get_profile(name)
    assert p.name == name
    assert from_dict(to_dict(p)) == p
    assert config_hash(from_dict(to_dict(p))) == config_hash(p)


def test_paper_profile_is_section_3_1():
    t = get_profile("paper").train
    m = get_profile("paper").model
    assert (m.name, m.width) == ("resnet18", 0.5)  # ResNet18Thinner
    assert (t.batch_size, t.weight_decay, t.epochs, t.eps, t.momentum) == (128, 1e-4, 2000, 0.3, 0.9)
    assert [t.lr_for(k) for k in range(10)] == [0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.05, 0.1, 0.1, 0.1]
    assert (t.lr_schedule, t.lr_drop_epoch, t.lr_drop_to, t.select_on) == ("step", 1500, 0.01, "test")
    s = get_profile("paper").softmax
    assert (s.model, s.eps) == ("resnet50", 0.5)


def test_smoke_is_synthetic_and_cpu_is_real():
    assert get_profile("smoke").data.source == "synthetic"
    assert get_profile("cpu").data.source != "synthetic"
    assert get_profile("cpu").train.select_on == "val" and get_profile("cpu").data.val_per_class > 0


def test_overrides_apply_and_do_not_mutate():
    p = get_profile("smoke")
    q = apply_overrides(p, {"train.epochs": 5, "model.width": 1, "train.classes": [0, 3]}, workers=1)
    assert (q.train.epochs, q.model.width, q.train.classes, q.workers) == (5, 1.0, (0, 3), 1)
    assert p.train.epochs == 2  # frozen original untouched
    assert apply_overrides(p, {"train.epochs": None}) == p  # None = keep
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.train.epochs = 3


@pytest.mark.parametrize("override, needle", [
    ({"train.epochs": 0}, "train.epochs"),
    ({"train.epochs": "ten"}, "train.epochs"),
    ({"train.objective": "both"}, "choose from"),
    ({"train.bogus": 1}, "train.bogus"),
    ({"nosuch.key": 1}, "nosuch"),
    ({"model.width": -1.0}, "model.width"),
    ({"train.classes": [0, 0]}, "duplicates"),
    ({"train.lr_overrides": [(12, 0.1)]}, "lr_overrides"),
    ({"eval.eps_grid": [0.5, -1]}, "eval.eps_grid"),
    ({"train.channels_last": "yes"}, "true/false"),
])
def test_bad_overrides_fail_with_the_key_named(override, needle):
    with pytest.raises(ConfigError) as e:
        apply_overrides(get_profile("cpu"), override)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_profile():
    with pytest.raises(ConfigError, match="choose one of"):
        get_profile("tpu")


def test_hash_changes_with_config():
    p = get_profile("smoke")
    assert config_hash(p) != config_hash(apply_overrides(p, {"train.seed": 1}))


def test_autoattack_budgets_keep_their_profile_values_and_legacy_aa_fields_still_work():
    """The budgets moved from eval.aa_* into the attack registry (eval.budgets overrides them by name): each profile
    runs AutoAttack with the budgets it had, and overrides or recorded configs that set aa_* still mean the same."""
    from genrobust.core.config import budget_values
    from genrobust.core.registry import BUDGETS
    # the values the profiles held as eval.aa_* before (core/config.py at 3b684b7); smoke's FAB-T and Square
    # halved since (0.7.1, CI time: no result of the paper's profiles depends on them)
    before = {"paper": (100, 9, 100, 5000), "cpu": (50, 3, 50, 500), "gpu": (50, 3, 50, 500),
              "smoke": (10, 3, 5, 50)}
    names = ("apgd_iters", "targets", "fab_iters", "square_queries")
    for name, values in before.items():
        assert tuple(budget_values(get_profile(name).eval)[n] for n in names) == values, name
    cpu = get_profile("cpu")
    old = apply_overrides(cpu, {"eval.aa_apgd_iters": 7, "eval.aa_targets": 2})
    new = apply_overrides(cpu, {"eval.budgets": [["apgd_iters", 7], ["targets", 2], ["fab_iters", 50],
                                                 ["square_queries", 500]]})
    assert old.eval == new.eval and budget_values(old.eval)["apgd_iters"] == 7
    assert apply_overrides(cpu, {"eval": {"aa_square_queries": 9}}).eval.budgets[-1] == ("square_queries", 9)
    recorded = to_dict(cpu)
    recorded["eval"].pop("budgets")
    recorded["eval"].update(aa_apgd_iters=50, aa_targets=3, aa_fab_iters=50, aa_square_queries=500)
    assert from_dict(recorded) == cpu  # a results file written before the move loads as the same profile
    allowed = re.escape(str(sorted(BUDGETS)))
    with pytest.raises(ConfigError, match=f"^eval.budgets: unknown budget 'apgd_iter'; the registered attacks' "
                                          f"budgets are {allowed}$"):
        apply_overrides(cpu, {"eval.budgets": [["apgd_iter", 3]]})
    with pytest.raises(ConfigError, match="eval.aa_targets: 10 is out of range|targets 10 is out of range"):
        apply_overrides(cpu, {"eval.aa_targets": 10})


def test_legacy_aa_field_given_to_replace_names_the_fix():
    from genrobust.core.config import replace
    with pytest.raises(ConfigError, match=r"^eval.aa_fab_iters is now a budget .* set eval.budgets, e.g. "
                                          r"\[\['fab_iters', 20\]\]"):
        replace(get_profile("cpu").eval, aa_fab_iters=20)


def test_model_choices_are_the_model_registry():
    """model.name and softmax.model accept exactly the registered models (aliases included), read at validation: a
    model registered later is accepted, and once removed it is refused again with the registry's names."""
    p = get_profile("smoke")
    for name in models.model_names():
        assert apply_overrides(p, {"model.name": name, "softmax.model": name}).model.name == name
    with pytest.raises(ConfigError, match="tiny_test_net.*choose from.*small_cnn"):
        ModelConfig(name="tiny_test_net")
    models.register_model("tiny_test_net")(models.small_cnn)
    try:
        assert ModelConfig(name="tiny_test_net").name == SoftmaxConfig(model="tiny_test_net").model == "tiny_test_net"
    finally:
        models.MODEL_REGISTRY.pop("tiny_test_net")
    with pytest.raises(ConfigError, match="softmax.model: 'tiny_test_net' is not allowed"):
        SoftmaxConfig(model="tiny_test_net")
