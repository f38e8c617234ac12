"""Where results go and what they record: project paths, atomic writes, provenance, checkpoints.

Every results file carries a provenance record (config, git commit, package versions, seed, data source + sha256,
device, wall time). Every file is written atomically: to a temporary file in the same directory, then
``os.replace`` — a run killed mid-write leaves the previous file (or none), never half of one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "genrobust-checkpoint-v1"


class ResultsError(ValueError):
    """A missing or unreadable results/checkpoint file."""


# ---------------------------------------------------------------------------------------------------------------
# Paths
def project_root(start: str | os.PathLike | None = None) -> Path:
    """The genrobust checkout: ``$GENROBUST_ROOT``, else the nearest parent of ``start`` (default cwd) whose
    pyproject.toml names the genrobust project, else the checkout this package was installed from, else cwd."""
    if os.environ.get("GENROBUST_ROOT"):
        return Path(os.environ["GENROBUST_ROOT"]).resolve()
    here = Path(start or os.getcwd()).resolve()
    for candidate in [here, *here.parents, *Path(__file__).resolve().parents]:
        pp = candidate / "pyproject.toml"
        if pp.is_file() and 'name = "genrobust"' in pp.read_text(errors="ignore"):
            return candidate
    return here


def runs_dir() -> Path:
    """Checkpoints and per-run logs (ignored by git): ``$GENROBUST_RUNS`` or <root>/runs."""
    return Path(os.environ.get("GENROBUST_RUNS") or project_root() / "runs")


def cache_dir() -> Path:
    """Decoded data and feature statistics (ignored by git): ``$GENROBUST_CACHE`` or <root>/cache."""
    return Path(os.environ.get("GENROBUST_CACHE") or project_root() / "cache")


def results_dir(profile: str) -> Path:
    """Executed notebooks, metrics JSON and figures of a profile (committed for real runs)."""
    return Path(os.environ.get("GENROBUST_RESULTS") or project_root() / "results") / profile


# ---------------------------------------------------------------------------------------------------------------
# Atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success rename it over ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; give the result the permissions a plain open() would (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_default(o):
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_json(path, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def read_json(path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file; run the notebook/command that produces it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: corrupt JSON ({e}); delete it and re-run the step that writes it") from None


def append_jsonl(path, record: dict) -> None:
    """Append one JSON line (a metrics log). A line is written with one write() and flushed + fsynced, so a
    killed run leaves whole lines; readers skip a truncated last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=_json_default) + "\n"
    with open(path, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return out


def save_torch(path, obj) -> Path:
    # serialize to memory first: torch.save to a temp file + rename keeps the old checkpoint on a kill
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def load_torch(path, map_location="cpu"):
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such checkpoint; train it first (notebook 01 / `genrobust run`) or fix the path")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise ResultsError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e}); delete it and retrain") from None


# ---------------------------------------------------------------------------------------------------------------
# Provenance
def git_commit(root: Path | None = None) -> str:
    root = root or project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# The code this process runs is the code of the commit checked out when genrobust was imported: a long run
# (a notebook that takes an hour) may see later commits land before it writes its results.
_IMPORT_COMMIT: str = git_commit()


PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pytorch-fid", "pyautoattack", "papermill")


def package_versions(names=PACKAGES) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def device_info(device: str | torch.device | None = None) -> dict:
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = {"device": str(dev), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def provenance(config=None, *, data_source: dict | None = None, seed: int | None = None,
               wall_time_s: float | None = None, device=None, **extra) -> dict:
    """The record every results file carries."""
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    rec = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _IMPORT_COMMIT,
        "packages": package_versions(),
        "device": device_info(device),
        "seed": seed,
        "data_source": data_source,
        "wall_time_s": wall_time_s,
        "config": cfg,
    }
    head = git_commit()
    if head.removesuffix("-dirty") != rec["git_commit"].removesuffix("-dirty"):  # results being written dirty the tree
        rec["git_commit_at_write"] = head  # commits landed while this process ran; its code is git_commit's
    rec.update(extra)
    return rec


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints: one format for every model, holding weights and the config that made them.
def save_checkpoint(path, *, kind: str, state: dict, config: dict, **extra) -> Path:
    """kind: 'binary' (one d_k), 'generative' (K d_k + c), 'softmax'. ``state`` holds state dicts; ``config`` the
    model/run config needed to rebuild the modules."""
    if kind not in ("binary", "generative", "softmax"):
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    return save_torch(path, {"format": CHECKPOINT_FORMAT, "kind": kind, "state": state, "config": config, **extra})


def read_checkpoint(path) -> dict:
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ResultsError(f"{path}: not a genrobust checkpoint (format {CHECKPOINT_FORMAT}); "
                           "for a robustness-library file use genrobust.train.load_robustness_checkpoint")
    return ckpt


def _tensors(obj, prefix=""):
    """(name, tensor) pairs of a nested dict/list of tensors, in a deterministic (sorted-key) order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k], f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}")


def weights_digest(path) -> str:
    """sha256 (first 16 hex digits) of the tensors of a checkpoint's weights: names, dtypes, shapes and bytes, in
    a fixed order (not the file's bytes, which depend on the serializer). Two runs that produced bit-identical
    weights have equal digests: results files record it so a retrained model can be matched to the results
    computed from an earlier copy."""
    import hashlib
    ckpt = load_torch(path)
    state = ckpt.get("state", ckpt) if isinstance(ckpt, dict) else ckpt
    h = hashlib.sha256()
    for name, t in _tensors(state):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        t = t.detach().cpu().contiguous().reshape(-1)  # 0-d tensors (BN num_batches_tracked) need a dim to view
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def load_classifier(path, device="cpu") -> torch.nn.Module:
    """Load a generative or softmax classifier checkpoint as an eval-mode nn.Module that maps
    (N, 3, 32, 32) images in [0, 1] to (N, 10) logits. Every evaluation goes through this contract."""
    from .models import GenerativeClassifier, create_model

    ckpt = read_checkpoint(path)
    cfg = ckpt["config"]
    if ckpt["kind"] == "generative":
        models = [create_model(cfg["name"], 1, cfg["width"]) for _ in ckpt["state"]["models"]]
        for m, sd in zip(models, ckpt["state"]["models"]):
            m.load_state_dict(sd)
        model = GenerativeClassifier(models, torch.as_tensor(ckpt["state"]["c"]))
    elif ckpt["kind"] == "softmax":
        model = create_model(cfg["name"], cfg.get("num_outputs", 10), cfg["width"])
        model.load_state_dict(ckpt["state"]["model"])
        if "normalize" in cfg:  # e.g. an imported robustness-library model keeps its own constants
            model.normalize.mean.copy_(torch.tensor(cfg["normalize"]["mean"]).view(1, 3, 1, 1))
            model.normalize.std.copy_(torch.tensor(cfg["normalize"]["std"]).view(1, 3, 1, 1))
    else:
        raise ResultsError(f"{path}: a single binary model d_k is not a classifier; build a GenerativeClassifier "
                           "from all K (genrobust.calibrate) and load that")
    for p in model.parameters():
        p.requires_grad_(False)  # frozen: attacks take input gradients only
    return model.to(device).eval()
