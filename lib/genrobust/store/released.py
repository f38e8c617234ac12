"""results/<profile>/models/: the evaluated classifiers as safetensors, models.json, model card.

Released models: the classifiers a reproduction evaluated, in ``results/<profile>/models/``, so that anyone can
load them on a fresh clone, check a number on the exact models, and re-run notebooks 03-04 without training
(``genrobust reproduce --profile P --from-released``).

The directory holds one safetensors file per classifier kind (``generative.safetensors``: the K d_k and the
calibration c of Eq. 7; ``softmax.safetensors``: the baseline), fp32 as trained (written by
:func:`genrobust.store.checkpoints.save_released`), ``models.json`` (per file: kind, config, weights digest --
equal to the one the results files record --, sha256, parameters, bytes, and accuracy once notebook 03 has
measured it) and ``MODEL_CARD.md`` rendered from models.json. Loading a released file recomputes its weights
digest and refuses a mismatch (:func:`genrobust.store.checkpoints.read_checkpoint`).
"""
from __future__ import annotations

from pathlib import Path

from .checkpoints import RELEASED_SUFFIX, save_released, weights_digest
from .io import ResultsError, read_json, sha256_file, write_json, write_text
from .paths import results_dir

MODELS_DIR = "models"
MODELS_SCHEMA = 1
WHAT = {"generative": "the generative classifier argmax_k d_k(x) + c_k (Eq. 7): the K binary d_k and the learned "
                      "calibration c (notebook 02)",
        "softmax": "the softmax baseline trained with PGD adversarial training (notebook 01)"}


def models_dir(profile: str) -> Path:
    return results_dir(profile) / MODELS_DIR


def release_models(profile: str, checkpoints: dict[str, str], *, provenance: dict,
                   accuracy: dict[str, dict] | None = None, weights: bool = True) -> Path:
    """Write ``checkpoints`` ({kind: training checkpoint}) as released files of ``profile`` with models.json and
    the model card; a file whose weights digest is already released is kept as it is (re-running is cheap).
    ``accuracy``: {kind: {'clean': ..., 'worst case at eps E': ...}} from notebook 03, kept in models.json.
    ``weights`` False: models.json and the card record each model's digest, and no weights are written (models
    too large for git). Returns the models.json path."""
    out = models_dir(profile)
    listed = out / "models.json"
    old = read_json(listed) if listed.is_file() else {}
    files = dict(old.get("files", {}))
    for kind, ckpt in checkpoints.items():
        name = f"{kind}{RELEASED_SUFFIX}"
        entry = files.get(name)
        if not weights:
            digest = weights_digest(ckpt)
            if entry is None or entry["weights_digest"] != digest:
                entry = {"kind": kind, "weights_digest": digest, "what": WHAT.get(kind, kind), "weights": "not released"}
        elif entry is None or not (out / name).is_file() or entry["weights_digest"] != weights_digest(ckpt):
            entry = {**save_released(out / name, ckpt), "what": WHAT.get(kind, kind)}
            entry["sha256"] = sha256_file(out / name).hexdigest()
        if accuracy and kind in accuracy:
            entry["accuracy"] = accuracy[kind]
        files[name] = entry
    record = {"schema_version": MODELS_SCHEMA, "profile": profile, "license": "MIT", "files": files,
              "provenance": provenance}
    write_json(listed, record)
    write_text(out / "MODEL_CARD.md", model_card(record))
    return listed


def released_paths(profile: str, kinds) -> dict[str, str]:
    """{kind: released file} of ``profile`` for ``kinds``; a missing one is an error naming how to make it."""
    out, paths = models_dir(profile), {}
    for kind in kinds:
        path = out / f"{kind}{RELEASED_SUFFIX}"
        if not path.is_file():
            raise ResultsError(f"{path} is missing: profile {profile!r} has no released {kind} model; run notebooks "
                               f"01-03 of it (they write {out}/), or drop from_released")
        paths[kind] = str(path)
    return paths


def model_card(record: dict) -> str:
    """MODEL_CARD.md from models.json: what each file is, the profile, commit, data, accuracy and license."""
    prov = record.get("provenance", {})
    data = prov.get("data_source") or {}
    lines = [f"# Released models: profile `{record['profile']}`", "",
             "Written by genrobust (notebooks 02-03) from the checkpoints its results were computed on. Load one "
             "with `genrobust.load_classifier(path)`: an eval-mode `nn.Module` mapping (N, 3, 32, 32) images in "
             "[0, 1] to (N, 10) logits. Loading recomputes the weights digest and refuses a file that differs.", "",
             f"- commit: `{prov.get('git_commit', 'unknown')}`",
             f"- data: {data.get('name', data.get('source', 'unknown'))}"
             + (f" (sha256 `{str(data['sha256'])[:16]}...`)" if data.get("sha256") else ""),
             f"- license: {record['license']} (the weights, like the code)", "",
             "| file | what | parameters | weights digest | accuracy (n, attacks) |", "|---|---|---|---|---|"]
    for name, e in sorted(record["files"].items()):
        acc = "; ".join(f"{k} {v['accuracy']:.1%} (n {v['n']}, {v['attacks']})"
                        for k, v in e.get("accuracy", {}).items()) or "not measured yet (notebook 03)"
        size = f"{e['parameters']:,}" if "parameters" in e else "weights not released (too large for git)"
        lines.append(f"| `{name}` | {e['what']} | {size} | `{e['weights_digest']}` | {acc} |")
    lines += ["", "Numbers come from `models.json` beside this file (its `files.*.accuracy` from notebook 03's "
              "evaluation of these exact weights).", ""]
    return "\n".join(lines)
