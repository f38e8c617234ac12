# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — Training: binary models d_k (Eq. 3 / Eq. 9) and the softmax PGD-AT baseline
# Paper: Sections 2 and 3.1. One binary classifier d_k per CIFAR-10 class, trained to tell clean class-k images from
# other-class images perturbed (L2 PGD, radius eps) to *maximize* d_k (Eq. 3, `objective="out"`); with
# `objective="combined"` (Eq. 9) the positives are also perturbed to *minimize* d_k within eps1.
# Runs are keyed by their config: finished runs are reused, interrupted runs resume after their last completed epoch.

# %% tags=["parameters"]
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

# %%
# %matplotlib inline
import pandas as pd
from IPython.display import Markdown, display
import genrobust as gr

# %%
cfg = gr.params.notebook_profile("01_training", globals())  # the parameters above -> config keys
data = gr.data.prepare_data(cfg.data)
display(Markdown(f"**Profile `{cfg.name}`** — {cfg.description}\n\n**Data:** {data.source['name']} "
                 f"(sha256 `{data.source['sha256']}`), split {data.split}"))
gr.tables.config_table(cfg, ["model", "train"])

# %% [markdown]
# ## Binary models d_k and the softmax baseline (independent jobs through the executor)

# %%
rows, soft = gr.classifiers.train_all(cfg, softmax=True) if train_softmax else (gr.classifiers.train_all(cfg), None)
gr.tables.training_table(rows)

# %%
fig = gr.plots.training_curves(rows, class_names=gr.data.CLASSES,
                               path=gr.results_dir(cfg.name) / "figures" / "training_curves.png")

# %% [markdown]
# ## Softmax PGD-AT baseline (Madry et al., L2), about the same parameter count as the K binary models

# %%
if soft is not None:
    display(gr.tables.softmax_table(soft, cfg))

# %%
path = gr.metrics_files.write_training_metrics(cfg, rows, soft, data)
print("metrics written to", path)
