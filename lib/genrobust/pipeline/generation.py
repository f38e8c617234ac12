"""How generation runs: notebook 04's generation planned as keyed, resumable units with its cost estimate, saved and
reloaded (what each unit computes is genrobust.measure.generate).

Notebook 04's generation as keyed, resumable units (:class:`genrobust.measure.generate.GenUnits`): one unit per
classifier, kind (samples / counterfactuals) and batch of starting images, under ``runs/generate/``. Before the
attacks start, :func:`generate` says how many units are done, how many remain and how long they and the FID
passes should take, then runs the missing units as jobs through the profile's executor (local workers or SLURM);
a killed notebook 04 loses only the batches in flight. Inception features are units of their own,
one per image set, content-addressed in ``cache/fid/`` (:func:`genrobust.measure.fid.cached_features`).

Generation and scoring can run on two machines (the gpu profile: tools/gpu_run.py): :func:`save_generated` writes
the generated images (uint8, as Inception sees them), their checks and the classifiers' digests where the
classifiers are; :func:`load_generated` reads them back elsewhere, the starting images recomputed from the data
(deterministic in gen.seed), so notebook 04 scores them with the same code and no classifier.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..core.config import ConfigError, Profile, config_hash, from_dict, to_dict
from ..core.device import default_device
from ..core.fold import folded_copy
from ..data.splits import Prepared, prepare_data
from ..measure import fid as gfid
from ..measure.generate import (KINDS, GenUnits, Generated, generate as run_generation, starting_images, starts_of,
                                targeted_pgd, unit_of)
from ..store.checkpoints import load_classifier, weights_digest
from ..store.executors import JobSettings, configure_threads, run_jobs
from ..store.io import ResultsError, load_torch, read_json, save_torch, sha256_file, write_json
from ..store.paths import runs_dir
from ..store.provenance import provenance
from ..store.units import UnitStore


def generation_units(paths: dict[str, str], data: Prepared) -> GenUnits:
    return GenUnits(UnitStore(runs_dir() / "generate"), {k: weights_digest(p) for k, p in paths.items()},
                    data.identity())


def _plan(profile: Profile, units: GenUnits) -> list[tuple[str, str, int, int, bool]]:
    g = profile.gen
    sizes = {"samples": g.n_samples, "counterfactuals": g.n_counterfactuals or g.n_samples}
    return [(name, kind, lo, min(lo + g.batch_size, sizes[kind]),
             units.key(g, name, kind, lo, min(lo + g.batch_size, sizes[kind])) in units.store)
            for name in units.digests for kind in KINDS for lo in range(0, sizes[kind], g.batch_size)]


def _pgd_seconds_per_image(models: dict, profile: Profile, units: GenUnits, plan) -> tuple[dict, str]:
    """Seconds per starting image of each classifier's PGD chain: from finished units, else a 1-step probe on
    4 random images scaled to the longest chain's steps."""
    g, rates, sources = profile.gen, {}, set()
    for name, model in models.items():
        done = [units.store.get(units.key(g, n, k, lo, hi)) | {"n": hi - lo}
                for n, k, lo, hi, d in plan if d and n == name]
        done = [r for r in done if r.get("seconds") is not None]
        if done:
            rates[name] = sum(r["seconds"] for r in done) / sum(r["n"] for r in done)
            sources.add("finished units")
            continue
        x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        targeted_pgd(model, x, torch.arange(4) % 10, eps=g.eps, steps=1, step_size=1.0)
        rates[name] = (time.perf_counter() - t0) / 4 * max(s for s, _ in g.pgd_configs)
        sources.add("a 1-step probe")
    return rates, " and ".join(sorted(sources))


def _inception_estimate(profile: Profile, data: Prepared) -> str:
    """The FID passes' cost from a timed 8-image Inception pass: every cell and the anchor (features of image sets
    seen before come from the cache and cost nothing, so this is an upper bound) + the reference, if not cached."""
    g = profile.gen
    ex = gfid.inception(g.inception, channels_last=g.fid_channels_last, fold_bn=g.fid_fold_bn,
                        batch_size=g.fid_batch_size)
    ex(data.test_x[:2])  # warm-up: first-call allocations
    t0 = time.perf_counter()
    ex(data.test_x[:8])
    per_image = (time.perf_counter() - t0) / 8
    n_cf = g.n_counterfactuals or g.n_samples
    cells = len(g.pgd_configs) * 2 * (g.n_samples + n_cf) + n_cf
    ref = g.n_reference or len(data.train_y) + len(data.val_y)
    return (f"Inception at {1 / per_image:.1f} images/s: at most {cells * per_image / 60:.1f} min for the "
            f"{cells:,} images of the cells and the anchor, + {ref * per_image / 60:.1f} min for {ref:,} reference "
            "images unless their statistics are cached")


def _generation_job(profile_dict: dict, name: str, checkpoint: str, kind: str,
                    ranges: list[tuple[int, int]]) -> int:
    """Compute and store the generation units [lo, hi) of ``ranges`` for one classifier and kind (a job: module
    level, so local/SLURM executors pickle it); units that exist meanwhile are read, not recomputed. Returns how
    many it covered."""
    profile = from_dict(profile_dict)
    configure_threads(profile)
    device = default_device()
    data = prepare_data(profile.data, progress=False)
    units = generation_units({name: checkpoint}, data)
    x0, target = starts_of(starting_images(profile.gen, data), kind, device)
    work = folded_copy(load_classifier(checkpoint, device))
    for lo, hi in ranges:  # unit_of reads a unit that exists meanwhile instead of computing it
        unit_of(work, x0, target, profile.gen, lo, hi, units, units.key(profile.gen, name, kind, lo, hi))
    return len(ranges)


def run_missing(profile: Profile, paths: dict[str, str], plan, *, jobs: JobSettings | None = None,
                progress: bool = True) -> int:
    """The missing units as jobs of at most gen.units_per_job batches of one classifier and kind, under ``jobs``
    (None: the profile's). Returns the number of jobs."""
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for name, kind, lo, hi, done in plan:
        if not done:
            groups.setdefault((name, kind), []).append((lo, hi))
    size, todo = profile.gen.units_per_job, []
    for (name, kind), ranges in groups.items():
        todo += [(to_dict(profile), name, str(paths[name]), kind, ranges[i:i + size])
                 for i in range(0, len(ranges), size)]
    if todo:
        run_jobs(_generation_job, todo, jobs=jobs or JobSettings.of(profile),
                 desc=f"generation units ({len(todo)} jobs)", progress=progress)
    return len(todo)


def generate(profile: Profile, data: Prepared, paths: dict[str, str], *, jobs: JobSettings | None = None,
             echo=print, progress: bool = True, estimate_fid: bool = True) -> Generated:
    """Seeds, samples and counterfactuals of the classifiers in ``paths`` ({name: checkpoint}), as units: first
    what is done, what remains and its estimated cost (``echo``; with ``estimate_fid``, also the FID passes', which
    needs the Inception weights), then the missing batches as jobs (``jobs``; None: the profile's executor,
    workers and SLURM resources), then the assembly (nothing recomputed)."""
    units = generation_units(paths, data)
    models = {name: load_classifier(path) for name, path in paths.items()}
    plan = _plan(profile, units)
    rates, source = _pgd_seconds_per_image(models, profile, units, plan)
    todo = [(n, hi - lo) for n, _, lo, hi, d in plan if not d]
    seconds = sum(rates[n] * m for n, m in todo)
    echo(f"generation: {len(plan)} units (classifier x kind x batch of {profile.gen.batch_size}), "
         f"{len(plan) - len(todo)} done, {len(todo)} to run: about "
         f"{seconds / 60:.1f} min of targeted PGD (rates from {source})")
    if estimate_fid:
        echo(_inception_estimate(profile, data))
    run_missing(profile, paths, plan, jobs=jobs, progress=progress)
    return run_generation(profile.gen, data, models, progress=progress, units=units)


GENERATED_FORMAT = "genrobust-generated-1"


def _cell_name(kind: str, name: str, pgd: tuple[int, float]) -> str:
    return f"{kind}.{name}.{int(pgd[0])}x{float(pgd[1]):g}"


def save_generated(profile: Profile, data: Prepared, generated: Generated, paths: dict[str, str], out: Path) -> Path:
    """``generated``'s images (uint8 (N, 3, 32, 32) per cell, in images.pt) and what notebook 04 records beside them
    (checks, seconds, the classifiers' weights digests, the gen config, the data's identity, the provenance of the
    machine that generated: generated.json, written last) into the directory ``out``. Returns ``out``."""
    out = Path(out)
    tensors = {_cell_name(k, n, p): gfid.quantize(x) for (k, n, p), x in generated.images.items()}
    save_torch(out / "images.pt", tensors)
    write_json(out / "generated.json", {
        "format": GENERATED_FORMAT, "gen": to_dict(profile.gen), "gen_hash": config_hash(profile.gen),
        "data": data.identity(), "cells": [[k, n, [int(p[0]), float(p[1])]] for k, n, p in generated.images],
        "checks": generated.checks, "seconds": generated.seconds, "chained": generated.chained,
        "classifiers": {k: {"path": str(p), "weights_sha256": weights_digest(p)} for k, p in paths.items()},
        "images_sha256": sha256_file(out / "images.pt").hexdigest(),
        "provenance": provenance(profile, data_source=data.source, seed=profile.gen.seed)})
    return out


def load_generated(profile: Profile, data: Prepared, src) -> tuple[Generated, dict]:
    """What :func:`save_generated` wrote to ``src``, checked against this profile's gen config and data: (the
    Generated, starting images recomputed from ``data``; the saved record: classifiers' digests, provenance).
    Refuses, with one line, a directory made under another gen config or other data, or a damaged image file."""
    src = Path(src)
    meta_path, images_path = src / "generated.json", src / "images.pt"
    if not meta_path.is_file() or not images_path.is_file():
        raise ResultsError(f"{src}: no generated.json + images.pt; give the directory notebook 04 wrote with "
                           "fid='later' (tools/gpu_run.py finish passes it)")
    meta = read_json(meta_path)
    if meta.get("format") != GENERATED_FORMAT:
        raise ResultsError(f"{meta_path}: format {meta.get('format')!r}, expected {GENERATED_FORMAT!r}")
    if meta["gen_hash"] != config_hash(profile.gen):
        raise ConfigError(f"{src}: generated under another gen config than profile {profile.name!r} resolves to "
                          "here; score it with the same profile and overrides ($GENROBUST_OVERRIDES) as the run")
    if json.loads(json.dumps(meta["data"])) != json.loads(json.dumps(data.identity(), default=str)):
        raise ConfigError(f"{src}: generated from other data ({meta['data']}); point $GENROBUST_DATA at the same "
                          "CIFAR-10 copy the run used")
    if sha256_file(images_path).hexdigest() != meta["images_sha256"]:
        raise ResultsError(f"{images_path}: damaged (sha256 differs from generated.json)")
    tensors = load_torch(images_path)
    out = starting_images(profile.gen, data)
    for kind, name, pgd in meta["cells"]:
        pgd = (int(pgd[0]), float(pgd[1]))
        x = tensors[_cell_name(kind, name, pgd)]
        if x.dtype != torch.uint8 or tuple(x.shape[1:]) != (3, 32, 32):
            raise ResultsError(f"{images_path}: cell {kind}/{name}/{pgd}: {x.dtype} {tuple(x.shape)}, expected "
                               "uint8 (N, 3, 32, 32)")
        out.images[(kind, name, pgd)] = x.float().div_(255.0)
    out.checks, out.chained = meta["checks"], meta["chained"]
    out.seconds = {**meta["seconds"], "seeds": out.seconds["seeds"]}
    return out, meta
