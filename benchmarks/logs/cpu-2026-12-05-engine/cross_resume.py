"""Cross-version resume: 'partial' stops the smoke runs after epoch 1 (their last.pt written), 'resume' finishes
them; run partial with one tree's lib and resume with another's, then compare digests with an uninterrupted run."""
import os, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from genrobust.core.config import get_profile
from genrobust.data import prepare_data
from genrobust.training import binary, softmax, loop
mode, runs_dir = sys.argv[1], sys.argv[2]
os.environ["GENROBUST_RUNS"] = runs_dir
p = get_profile("smoke")
data = prepare_data(p.data, progress=False)
import digest_lib as D  # digest.py up to its "p = get_profile" line (digest_lib.py beside it)
jobs = [("fused", lambda: binary.train_binaries_fused(p, data=data, device="cpu", progress=False), 10),
        ("sequential d_0", lambda: [binary.train_binary(p, 0, data, device="cpu", progress=False)], 1),
        ("softmax", lambda: [softmax.train_softmax(p, data=data, device="cpu", progress=False)], 1)]
real = loop.save_torch
for name, job, n_saves in jobs:
    os.environ["GENROBUST_RUNS"] = os.path.join(runs_dir, name.replace(" ", "_"))
    if mode == "partial":
        saved = []
        def stop(path, obj, saved=saved, n=n_saves):
            real(path, obj); saved.append(path)
            if len(saved) == n:
                raise KeyboardInterrupt
        loop.save_torch = stop
        try:
            job()
        except KeyboardInterrupt:
            print(name, "stopped after epoch 1")
        loop.save_torch = real
    else:
        res = job()
        for i, r in enumerate(res):
            D.show(f"{name} {i}", r)
