"""Train the smoke profile's d_k (sequential and fused) and softmax in fresh run dirs; print weight digests."""
import hashlib, os, sys, tempfile, json
import torch
torch.set_num_threads(1)
from genrobust.core.config import get_profile, apply_overrides
from genrobust.data import prepare_data
from genrobust.training import binary, softmax
from genrobust.store.io import load_torch

def dig(state):
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(k.encode()); h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

def show(tag, res):
    run = os.path.dirname(res["checkpoint"])
    best = load_torch(res["checkpoint"])["state"]["model"]
    last = load_torch(os.path.join(run, "last.pt"))
    mom = {f"{i}": v["momentum_buffer"] for i, v in last["optimizer"]["state"].items()}
    print(tag, "best", dig(best), "last", dig(last["model"]), "mom", dig(mom),
          "loss", [m["train_loss"] for m in res["metrics"]], "sel", [m.get("val_adv_auroc", m.get("val_robust_acc")) for m in res["metrics"]], flush=True)

