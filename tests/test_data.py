"""Tests for genrobust.data: synthetic data, splits, the binary task, augmentation, loaders and bad input."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genrobust import data as D
from genrobust.data import base, batches, cifar_batches, imagefolder
from genrobust.data import cache as cache_mod
from genrobust.data import CLASSES, DataError

REAL_SHA256 = "05b4c8c8bf43c21250b5d4abc4621c4fed6837d691555b00c9215bfc6b363d11"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    # Tests must not depend on the developer's environment.
    monkeypatch.delenv("GENROBUST_DATA", raising=False)
    monkeypatch.delenv("GENROBUST_CACHE", raising=False)


@pytest.fixture(scope="module")
def syn():
    return D.make_synthetic(40, 10, seed=3)


# ------------------------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_dtypes_labels(syn):
    assert syn.train_x.shape == (400, 3, 32, 32) and syn.train_x.dtype == torch.uint8
    assert syn.test_x.shape == (100, 3, 32, 32) and syn.test_x.dtype == torch.uint8
    assert syn.train_y.dtype == torch.int64 and syn.test_y.dtype == torch.int64
    assert torch.bincount(syn.train_y, minlength=10).tolist() == [40] * 10
    assert torch.bincount(syn.test_y, minlength=10).tolist() == [10] * 10
    assert syn.train_x.float().std() > 20  # not a constant image


def test_synthetic_provenance_says_synthetic(syn):
    rec = syn.source.describe()
    assert rec["synthetic"] is True and syn.source.kind == "synthetic" and rec["sha256"] is None
    assert "SYNTHETIC" in rec["name"] and "not CIFAR-10" in rec["name"]
    assert rec["seed"] == 3 and rec["n_train_per_class"] == 40
    json.dumps(rec)  # JSON-serializable
    assert D.describe_source(syn.source) == rec


def test_synthetic_deterministic_and_seed_dependent(syn):
    again = D.make_synthetic(40, 10, seed=3)
    assert torch.equal(again.train_x, syn.train_x) and torch.equal(again.test_x, syn.test_x)
    other = D.make_synthetic(40, 10, seed=4)
    assert not torch.equal(other.train_x, syn.train_x)


def test_synthetic_does_not_touch_global_rng():
    state = torch.get_rng_state()
    D.make_synthetic(5, 2, seed=0)
    assert torch.equal(state, torch.get_rng_state())


def test_synthetic_is_learnable():
    s = D.make_synthetic(100, 50, seed=0)
    # Nearest class mean on raw pixels: a cheap proxy for "a small CNN learns it" (chance = 10%).
    xtr, xte = s.train_x.float().flatten(1), s.test_x.float().flatten(1)
    means = torch.stack([xtr[s.train_y == c].mean(0) for c in range(10)])
    acc = (torch.cdist(xte, means).argmin(1) == s.test_y).float().mean().item()
    assert acc > 0.5, acc


def test_load_dispatcher_synthetic_and_unknown():
    s = D.load("synthetic", synthetic=D.SyntheticSpec(3, 2, seed=1))
    assert s.source.synthetic and len(s.train_y) == 30 and len(s.test_y) == 20
    assert torch.equal(s.train_x, D.make_synthetic(3, 2, seed=1).train_x)
    assert not torch.equal(s.train_x, D.load("synthetic", synthetic=D.SyntheticSpec(3, 2, seed=2)).train_x)
    assert len(D.load("synthetic").train_y) == 5000  # the default spec: make_synthetic's 500 per class
    with pytest.raises(DataError, match="^synthetic= only applies to source 'synthetic'"):
        D.load("batches", synthetic=D.SyntheticSpec(3, 2))  # never silently ignored
    with pytest.raises(DataError, match="auto, batches, imagefolder, synthetic"):
        D.load("cifar100")
    with pytest.raises(DataError):
        D.load_cifar10("synthetic")  # never synthetic data from the CIFAR-10 loader


# ------------------------------------------------------------------------------------------- splits


def test_stratified_split(syn):
    y = syn.train_y
    tr, va = D.stratified_split(y, 7, seed=0)
    assert tr.dtype == va.dtype == torch.int64
    assert len(va) == 70 and len(tr) == len(y) - 70
    assert torch.bincount(y[va], minlength=10).tolist() == [7] * 10
    assert not set(tr.tolist()) & set(va.tolist())
    assert sorted(tr.tolist() + va.tolist()) == list(range(len(y)))
    assert torch.equal(tr, torch.sort(tr).values) and torch.equal(va, torch.sort(va).values)
    tr2, va2 = D.stratified_split(y, 7, seed=0)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    _, va3 = D.stratified_split(y, 7, seed=1)
    assert not torch.equal(va, va3)
    with pytest.raises(DataError):
        D.stratified_split(y, 41, seed=0)


def test_subset_per_class(syn):
    y = syn.train_y
    idx = D.subset_per_class(y, 5, seed=2)
    assert torch.bincount(y[idx], minlength=10).tolist() == [5] * 10
    assert torch.equal(idx, D.subset_per_class(y, 5, seed=2))
    assert torch.equal(idx, torch.sort(idx).values)
    # "first n of a seeded permutation": a larger n extends a smaller one
    assert set(idx.tolist()) <= set(D.subset_per_class(y, 9, seed=2).tolist())
    assert torch.equal(D.subset_per_class(y, None, seed=0), torch.arange(len(y)))
    with pytest.raises(DataError):
        D.subset_per_class(y, 41, seed=0)


def test_to_float(syn):
    f = D.to_float(syn.test_x[:4])
    assert f.dtype == torch.float32 and f.shape == (4, 3, 32, 32)
    assert 0.0 <= f.min() and f.max() <= 1.0
    assert torch.allclose(f * 255, syn.test_x[:4].float())
    with pytest.raises(DataError):
        D.to_float(f)


# ------------------------------------------------------------------------------------------- binary task


def _labelled_images(y: torch.Tensor) -> torch.Tensor:
    """Images whose pixel (0, 0, 0) is the label and pixels (1, 0, 0)/(1, 0, 1) encode the index."""
    x = torch.zeros(len(y), 3, 32, 32, dtype=torch.uint8)
    idx = torch.arange(len(y))
    x[:, 0, 0, 0] = y.to(torch.uint8)
    x[:, 1, 0, 0] = (idx // 256).to(torch.uint8)
    x[:, 1, 0, 1] = (idx % 256).to(torch.uint8)
    return x


def _ids(xb: torch.Tensor) -> list[int]:
    return (xb[:, 1, 0, 0].long() * 256 + xb[:, 1, 0, 1].long()).tolist()


def test_binary_batches_balanced_and_correct():
    y = torch.arange(10).repeat_interleave(30)  # 30 per class
    x = _labelled_images(y)
    bb = D.BinaryBatches(x, y, k=3, batch_size=8, generator=torch.Generator().manual_seed(0))
    assert len(bb) == 30 // 4 == 7
    batches = list(bb)
    assert len(batches) == 7
    pos_ids, neg_ids = [], []
    for xp, xn in batches:
        assert xp.shape == xn.shape == (4, 3, 32, 32) and xp.dtype == xn.dtype == torch.uint8
        assert (xp[:, 0, 0, 0] == 3).all()
        assert (xn[:, 0, 0, 0] != 3).all()
        pos_ids += _ids(xp)
        neg_ids += _ids(xn)
    assert len(set(pos_ids)) == len(pos_ids) == 28  # one pass, no repeats
    assert len(set(neg_ids)) == len(neg_ids)  # without replacement within the epoch
    # a fresh permutation next epoch
    pos_ids2 = [i for xp, _ in bb for i in _ids(xp)]
    assert pos_ids2 != pos_ids
    # reproducible with the same seed
    bb_same = D.BinaryBatches(x, y, k=3, batch_size=8, generator=torch.Generator().manual_seed(0))
    assert [i for xp, _ in bb_same for i in _ids(xp)] == pos_ids


def test_binary_batches_no_drop_last_and_small_negative_pool():
    y = torch.tensor([0] * 9 + [1] * 3)  # 9 positives, only 3 negatives
    x = _labelled_images(y)
    bb = D.BinaryBatches(x, y, k=0, batch_size=4, generator=torch.Generator().manual_seed(1), drop_last=False)
    assert len(bb) == 5
    sizes = [(len(p), len(n)) for p, n in bb]
    assert sizes == [(2, 2)] * 4 + [(1, 1)]
    assert all((n[:, 0, 0, 0] == 1).all() for _, n in bb)


def test_binary_batches_bad_args():
    y = torch.arange(10).repeat_interleave(4)
    x = _labelled_images(y)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(DataError):
        D.BinaryBatches(x, y, k=0, batch_size=7, generator=g)
    with pytest.raises(DataError):
        D.BinaryBatches(x, y, k=11, batch_size=8, generator=g)


# ------------------------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("policy", D.AUGMENTATIONS)
def test_augment_shape_determinism_global_rng(policy, syn):
    x = syn.train_x[:32]
    state = torch.get_rng_state()
    a = D.augment(x, policy, torch.Generator().manual_seed(5))
    b = D.augment(x, policy, torch.Generator().manual_seed(5))
    assert torch.equal(state, torch.get_rng_state()), "global RNG must be untouched"
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b)
    if policy == "none":
        assert torch.equal(a, x)
    else:
        changed = (a != x).flatten(1).any(1)
        assert changed.sum() >= 16, f"{policy} changed only {int(changed.sum())}/32 images"
        c = D.augment(x, policy, torch.Generator().manual_seed(6))
        assert not torch.equal(a, c)


def test_crop_flip_is_a_shifted_possibly_flipped_crop():
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = D.augment(x, "crop_flip", torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    n_flipped = 0
    for i in range(64):
        options = [
            (flip, oy, ox)
            for flip in (False, True)
            for oy in range(9)
            for ox in range(9)
            if torch.equal(out[i], (padded[i].flip(-1) if flip else padded[i])[:, oy:oy + 32, ox:ox + 32])
            or (flip and torch.equal(out[i], padded[i][:, oy:oy + 32, ox:ox + 32].flip(-1)))
        ]
        assert options, f"image {i} is not a zero-padded crop (optionally flipped)"
        n_flipped += all(f for f, _, _ in options)
    assert 10 < n_flipped < 54  # flip p = 0.5


def test_cutout_zeroes_a_square(syn):
    x = torch.full((16, 3, 32, 32), 200, dtype=torch.uint8)
    out = batches._cutout(x, torch.Generator().manual_seed(0), size=16)
    zeros = (out == 0).all(1)  # (N, 32, 32)
    for i in range(16):
        n = int(zeros[i].sum())
        assert 0 < n <= 256
        rows, cols = zeros[i].any(1).nonzero().squeeze(1), zeros[i].any(0).nonzero().squeeze(1)
        assert n == len(rows) * len(cols)  # a rectangle (a clipped square)


def test_augment_bad_policy(syn):
    with pytest.raises(DataError, match="none, crop_flip, autoaugment_cutout"):
        D.augment(syn.train_x[:2], "mixup", torch.Generator())


# ------------------------------------------------------------------------------------------- image folder / zip


def _jpeg(rgb=(10, 200, 30), size=(32, 32), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, rgb if mode == "RGB" else 128).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _tiny_zip(path: Path, per_class: int = 2, prefix: str = "", extra: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for split in ("train", "test"):
            for c, name in enumerate(CLASSES):
                for i in range(per_class):
                    zf.writestr(f"{prefix}{split}/{name}/{i:04d}.jpg", _jpeg((c * 25, i * 60, 100)))
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return path


def test_tiny_zip_loads_and_caches(tmp_path):
    z = _tiny_zip(tmp_path / "tiny.zip", prefix="cifar10/")  # a top-level folder prefix is accepted
    s = D.load("imagefolder", z, cache_dir=tmp_path / "cache", progress=False)
    assert s.train_x.shape == (20, 3, 32, 32) and s.test_x.shape == (20, 3, 32, 32)
    assert s.train_y.tolist() == [c for c in range(10) for _ in range(2)]
    assert s.source.name == "CIFAR-10 (JPEG copy)" and not s.source.synthetic
    assert s.source.describe()["layout_prefix"] == "cifar10"
    assert list((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / f"cifar10-{s.source.sha256[:16]}.npz"]
    # the same data via "auto" + GENROBUST_DATA, and via an extracted directory
    with zipfile.ZipFile(z) as zf:
        zf.extractall(tmp_path / "extracted")
    d = D.load("imagefolder", tmp_path / "extracted", cache_dir=tmp_path / "cache2", progress=False)
    assert torch.equal(d.train_x, s.train_x) and torch.equal(d.test_y, s.test_y)
    assert d.source.path == str(tmp_path / "extracted" / "cifar10")


def test_auto_uses_genrobust_data(tmp_path, monkeypatch):
    z = _tiny_zip(tmp_path / "tiny.zip")
    monkeypatch.setenv("GENROBUST_DATA", str(z))
    monkeypatch.setenv("GENROBUST_CACHE", str(tmp_path / "envcache"))
    s = D.load("auto", project_root=tmp_path / "empty", download=False, progress=False)
    assert s.source.path == str(z) and len(s.train_y) == 20
    assert (tmp_path / "envcache").is_dir()
    assert D.default_search_paths(tmp_path)[0] == ("detect", z)


def test_corrupt_cache_is_replaced(tmp_path):
    z = _tiny_zip(tmp_path / "tiny.zip")
    first = D.load("imagefolder", z, cache_dir=tmp_path / "c", progress=False)
    (cache_file,) = (tmp_path / "c").iterdir()
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="corrupt"):
        again = D.load("imagefolder", z, cache_dir=tmp_path / "c", progress=False)
    assert torch.equal(again.train_x, first.train_x)
    assert np.load(cache_file)["train_x"].shape == (20, 3, 32, 32)  # rewritten


def test_batches_folder(tmp_path):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in base.BATCH_FILES:
        entry = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        (folder / name).write_bytes(pickle.dumps(entry))
    s = D.load("batches", tmp_path / "data")  # parent folder is accepted
    assert s.train_x.shape == (50, 3, 32, 32) and s.test_x.shape == (10, 3, 32, 32)
    assert s.source.name == "CIFAR-10 (original python batches)" and s.source.kind == "batches"
    raw = pickle.loads((folder / "test_batch").read_bytes())[b"data"]
    assert torch.equal(s.test_x.flatten(1), torch.from_numpy(raw))
    # auto finds <root>/data/cifar-10-batches-py before anything else
    a = D.load("auto", project_root=tmp_path, download=False)
    assert a.source.path == str(folder) and a.source.sha256 == s.source.sha256


# ------------------------------------------------------------------------------------------- bad input


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        D.load("imagefolder", tmp_path / "nope.zip", cache_dir=tmp_path)
    with pytest.raises(DataError, match="not found"):
        D.load("batches", tmp_path / "nope", download=False)


def test_download_failure_becomes_data_error(tmp_path, monkeypatch):
    def offline(parent):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar_batches, "torchvision_download", offline)
    with pytest.raises(DataError, match="could not download") as err:
        D.load("batches", tmp_path / "data", download=True)
    assert "\n" not in str(err.value)


def test_wrong_layout_zip(tmp_path):
    z = tmp_path / "flat.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("images/0001.jpg", _jpeg())
    with pytest.raises(DataError, match="outside the layout"):
        D.load("imagefolder", z, cache_dir=tmp_path / "c", progress=False)
    z2 = _tiny_zip(tmp_path / "badclass.zip", extra={"train/kitten/0001.jpg": _jpeg()})
    with pytest.raises(DataError, match="kitten"):
        D.load("imagefolder", z2, cache_dir=tmp_path / "c", progress=False)
    z3 = tmp_path / "missing_class.zip"
    with zipfile.ZipFile(z3, "w") as zf:
        for split in ("train", "test"):
            for name in CLASSES[:9]:
                zf.writestr(f"{split}/{name}/0.jpg", _jpeg())
    with pytest.raises(DataError, match="truck"):
        D.load("imagefolder", z3, cache_dir=tmp_path / "c", progress=False)


def test_wrong_image_size_names_member_and_leaves_no_partial_cache(tmp_path):
    bad = "test/ship/9999.jpg"
    z = _tiny_zip(tmp_path / "bad.zip", extra={bad: _jpeg(size=(64, 48))})
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="32x32") as err:
        D.load("imagefolder", z, cache_dir=cache, progress=False)
    assert bad in str(err.value) and "\n" not in str(err.value)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_grayscale_and_undecodable_images(tmp_path):
    z = _tiny_zip(tmp_path / "gray.zip", extra={"train/cat/9.jpg": _jpeg(mode="L")})
    with pytest.raises(DataError, match="RGB"):
        D.load("imagefolder", z, cache_dir=tmp_path / "c", progress=False)
    z2 = _tiny_zip(tmp_path / "junk.zip", extra={"train/cat/9.jpg": b"not a jpeg"})
    with pytest.raises(DataError, match="train/cat/9.jpg"):
        D.load("imagefolder", z2, cache_dir=tmp_path / "c", progress=False)


def test_not_a_zip(tmp_path):
    f = tmp_path / "cifar.zip"
    f.write_bytes(b"this is not a zip file" * 100)
    with pytest.raises(DataError, match="not a valid zip"):
        D.load("imagefolder", f, cache_dir=tmp_path / "c")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(DataError, match="is a file but not a zip"):
        D.load("auto", txt, cache_dir=tmp_path / "c")


def test_interrupted_cache_write_leaves_no_temp_file(tmp_path, monkeypatch):
    z = _tiny_zip(tmp_path / "tiny.zip")
    cache = tmp_path / "cache"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        D.load("imagefolder", z, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []  # no *.tmp, no half-written npz


def test_auto_with_nothing_lists_places_tried(tmp_path):
    root = tmp_path / "empty_project"
    root.mkdir()
    with pytest.raises(DataError) as err:
        D.load("auto", project_root=root, download=False, cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert "\n" not in msg
    for kind, place in D.default_search_paths(root):
        assert str(place) in msg
    assert "download=False" in msg and "GENROBUST_DATA" in msg


def test_explicit_broken_genrobust_data_is_not_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("GENROBUST_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="missing: does not exist"):
        D.load("auto", project_root=tmp_path, download=False)


# ------------------------------------------------------------------------------------------- the real zip


@pytest.fixture(scope="module")
def real(tmp_path_factory, real_zip):
    cache = tmp_path_factory.mktemp("real_cache")
    first = D.load("imagefolder", real_zip, cache_dir=cache, progress=False)  # decodes (~5-12 s), once
    return first, cache


@pytest.mark.slow
def test_real_zip_contents(real):
    s, _ = real
    assert s.train_x.shape == (50000, 3, 32, 32) and s.test_x.shape == (10000, 3, 32, 32)
    assert s.train_x.dtype == torch.uint8 and s.train_y.dtype == torch.int64
    assert torch.bincount(s.train_y, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(s.test_y, minlength=10).tolist() == [1000] * 10
    rec = s.source.describe()
    assert rec["sha256"] == REAL_SHA256 and rec["name"] == "CIFAR-10 (JPEG copy)" and rec["synthetic"] is False
    assert 100 < s.test_x.float().mean() < 150  # natural images, not blank


@pytest.mark.slow
def test_real_zip_second_load_uses_cache(real, real_zip, monkeypatch):
    first, cache = real

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(imagefolder, "_decode_images", no_decoding)
    second = D.load("imagefolder", real_zip, cache_dir=cache, progress=False)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, key), getattr(second, key)), key
    assert second.source == first.source
    assert [p.name for p in cache.iterdir()] == [f"cifar10-{REAL_SHA256[:16]}.npz"]
