"""The compile setting (eval.compile): off leaves the attack model alone, 'attacks' compiles each network the
attacks run, and a CPU machine without a C compiler falls back with one warning line."""
import warnings

import pytest
import torch

from genrobust.core import compiling
from genrobust.core.config import ConfigError, EvalConfig
from genrobust.core.models import GenerativeClassifier, create_model


def _gen():
    return GenerativeClassifier([create_model("small_cnn", 1, 0.5) for _ in range(3)])


def test_off_is_the_model_itself_and_attacks_compiles_each_sub_model(monkeypatch):
    g = _gen()
    assert compiling.maybe_compile(g, "off") is g
    monkeypatch.setattr(compiling, "c_compiler", lambda: "/usr/bin/cc")
    out = compiling.maybe_compile(g, "attacks")  # torch.compile is lazy: nothing compiles until a call
    assert out is g and all(isinstance(m, torch._dynamo.eval_frame.OptimizedModule) for m in g.models)
    soft = compiling.maybe_compile(create_model("small_cnn", 10, 0.5), "attacks")
    assert isinstance(soft, torch._dynamo.eval_frame.OptimizedModule)


def test_no_c_compiler_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    g = _gen()
    before = list(g.models)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert compiling.maybe_compile(g, "attacks") is g
    assert [m for m in g.models] == before
    assert len(caught) == 1 and "needs a C compiler" in str(caught[0].message)
    assert "\n" not in str(caught[0].message)


def test_bad_values_fail():
    with pytest.raises(ConfigError, match="eval.compile"):
        EvalConfig(compile="always")
    with pytest.raises(ValueError, match="compile"):
        compiling.maybe_compile(_gen(), "always")
