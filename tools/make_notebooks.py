"""Writes notebooks/*.ipynb from the cell sources below and in tools/nb_*.py (clean: no outputs).
Run: python tools/make_notebooks.py   (each tools/nb_NN.py defines NAME and CELLS, built with md()/code() from here)

Notebooks stay thin: a `parameters` cell of literals, then calls into genrobust and displays of what they return.
"""
from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parents[1]


def md(s):
    return nbf.v4.new_markdown_cell(s.strip())


def code(s, tags=None):
    c = nbf.v4.new_code_cell(s.strip())
    if tags:
        c.metadata["tags"] = tags
    return c


def write(name, cells):
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    for i, c in enumerate(nb.cells):
        c.id = f"cell-{i:02d}"  # stable ids: regenerating a notebook changes nothing unless its cells change
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = ROOT / "notebooks" / f"{name}.ipynb"
    path.parent.mkdir(exist_ok=True)
    nbf.write(nb, str(path))
    print(path)


SETUP = """
%matplotlib inline
import pandas as pd
from IPython.display import Markdown, display
import genrobust as gr
from genrobust import runner
"""

write("01_training", [
    md("""
# 01 — Training: binary models d_k (Eq. 3 / Eq. 9) and the softmax PGD-AT baseline
Paper: Sections 2 and 3.1. One binary classifier d_k per CIFAR-10 class, trained to tell clean class-k images from
other-class images perturbed (L2 PGD, radius eps) to *maximize* d_k (Eq. 3, `objective="out"`); with
`objective="combined"` (Eq. 9) the positives are also perturbed to *minimize* d_k within eps1.
Runs are keyed by their config: finished runs are reused, interrupted runs resume after their last completed epoch.
"""),
    code("""
profile = "smoke"        # smoke | cpu | paper
classes = None           # e.g. [0, 1]; None: the profile's (all 10)
model = None             # resnet18 | resnet18thin | resnet18thinner | resnet50 | small_cnn
width = None             # width multiplier of resnet18
objective = None         # "out" (Eq. 3) | "combined" (Eq. 9)
eps = None               # L2 radius for negatives (Eq. 3 eps, Eq. 9 eps2)
eps1 = None              # L2 radius for positives (Eq. 9 only)
attack_steps = None
attack_step_size = None
augment = None           # none | crop_flip | autoaugment_cutout
epochs = None
lr = None
lr_schedule = None       # step | onecycle | cosine | constant
weight_decay = None
seed = None
select_on = None         # test (paper) | val | last
data_source = None       # auto | batches | imagefolder | synthetic
data_path = None
executor = None          # inline | local | slurm
workers = None
train_softmax = True
softmax_epochs = None
""", tags=["parameters"]),
    code(SETUP),
    code("""
cfg = runner.resolve_profile(profile, classes=classes, model=model, width=width, objective=objective, eps=eps,
                             eps1=eps1, attack_steps=attack_steps, attack_step_size=attack_step_size,
                             augment=augment, epochs=epochs, lr=lr, lr_schedule=lr_schedule,
                             weight_decay=weight_decay, seed=seed, select_on=select_on, data_source=data_source,
                             data_path=data_path, executor=executor, workers=workers, softmax_epochs=softmax_epochs)
data = gr.train.prepare_data(cfg.data)
display(Markdown(f"**Profile `{cfg.name}`** — {cfg.description}\\n\\n**Data:** {data.source['name']} "
                 f"(sha256 `{data.source['sha256']}`), split {data.split}"))
gr.report.config_table(cfg, ["model", "train"])
"""),
    md("## Binary models d_k and the softmax baseline (independent jobs through the executor)"),
    code("""
rows, soft = runner.train_all(cfg, softmax=True) if train_softmax else (runner.train_all(cfg), None)
gr.report.training_table(rows)
"""),
    code("""
fig = gr.plots.training_curves(rows, class_names=gr.data.CLASSES,
                               path=gr.results.results_dir(cfg.name) / "figures" / "training_curves.png")
"""),
    md("## Softmax PGD-AT baseline (Madry et al., L2), about the same parameter count as the K binary models"),
    code("""
if soft is not None:
    display(gr.report.softmax_table(soft, cfg))
"""),
    code("""
path = gr.report.write_training_metrics(cfg, rows, soft, data)
print("metrics written to", path)
"""),
])

write("02_calibration", [
    md("""
# 02 — Calibration of the generative classifier (Eq. 7; Tab. 3, Tab. 4, Fig. 4)
Paper: Section 3.4.1. g(x) = argmax_k d_k(x) + c_k. With all d_k frozen, c (K,) is learned by minimizing the
cross-entropy of Eq. 7 on the training set, starting from c = 0, with early stopping on the selection split.
d_k outputs are computed once and cached. The calibrated classifier is saved for `genrobust.load_classifier`.
"""),
    code("""
profile = "smoke"
select_on = None          # test (paper) | val | train
train_missing = True      # train any missing d_k first (train-if-missing)
""", tags=["parameters"]),
    code(SETUP),
    code("""
cfg = runner.resolve_profile(profile, **{"calib.select_on": select_on})
data = gr.train.prepare_data(cfg.data)
if train_missing:
    runner.train_all(cfg)
cal = gr.calibrate.calibrate(cfg, data)
display(Markdown(f"Calibration selected on **{cal['select_on']}** after {cal['steps']} Adam steps; "
                 f"train n = {cal['n']['train']}, test n = {cal['n']['test']}; data: {data.source['name']}"))
"""),
    md("### Tab. 3 — accuracy before and after calibration (paper vs ours)"),
    code("gr.report.tab3(cal)"),
    md("### Tab. 4 — learned calibration constants c_k (paper vs ours)"),
    code("gr.report.tab4(cal)"),
    md("### Fig. 4 — d_k on class-k samples vs other-class samples (k = 1, 2, 3 in the paper's 1-based numbering)"),
    code("""
s_test, y_test = cal["_scores"]["test"]
fig = gr.plots.score_histograms(s_test, y_test, classes=(0, 1, 2), class_names=gr.data.CLASSES,
                                path=gr.results.results_dir(cfg.name) / "figures" / "fig4_histograms.png")
"""),
    code("""
clf = gr.load_classifier(cal["checkpoint"])
print(type(clf).__name__, "loaded from", cal["checkpoint"])
path = gr.report.write_calibration_metrics(cfg, cal)
print("metrics written to", path)
"""),
])


if __name__ == "__main__":
    import importlib.util
    import sys
    sys.modules.setdefault("make_notebooks", sys.modules[__name__])
    for extra in sorted((ROOT / "tools").glob("nb_*.py")):
        spec = importlib.util.spec_from_file_location(extra.stem, extra)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        write(mod.NAME, mod.CELLS)
