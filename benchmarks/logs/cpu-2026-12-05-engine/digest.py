"""Train the smoke profile's d_k (sequential and fused) and softmax in fresh run dirs; print weight digests."""
import json, os, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digest_lib import apply_overrides, binary, get_profile, prepare_data, show, softmax  # dig, show: one copy

p = get_profile("smoke")
if len(sys.argv) > 1:
    p = apply_overrides(p, json.loads(sys.argv[1]))
data = prepare_data(p.data, progress=False)
for path in ("sequential", "fused"):
    with tempfile.TemporaryDirectory() as d:
        os.environ["GENROBUST_RUNS"] = d
        if path == "fused":
            res = binary.train_binaries_fused(p, data=data, device="cpu", progress=False)
        else:
            res = [binary.train_binary(p, k, data, device="cpu", progress=False) for k in p.train.classes]
        for k, r in zip(p.train.classes, res):
            show(f"{path} d_{k}", r)
with tempfile.TemporaryDirectory() as d:
    os.environ["GENROBUST_RUNS"] = d
    show("softmax", softmax.train_softmax(p, data=data, device="cpu", progress=False))
