# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 — Standard and robust accuracy (Tab. 1, Fig. 1) with stronger attacks and gradient-masking checks
# Paper: Sections 3.2 and 3.3.1. Both classifiers are attacked through the same `genrobust.load_classifier` logits.
#
# * **The paper's protocol** over the eps grid: the softmax classifier by untargeted PGD on cross-entropy (Eq. 10),
#   the generative classifier by the adaptive attack of Eq. 11-12 (maximize each d_k, k != y, alone; keep the best).
# * **Stronger attacks** at one eps on a prefix of the same images: AutoAttack's standard L2 set (APGD-CE, APGD-T,
#   FAB-T, Square; `pyautoattack`) and the multi-targeted margin attack. An example counts as robust only if *no*
#   attack broke it (the per-example worst case).
# * **Gradient-masking checks** on every evaluation (auto-attack's `checks.py` is the model): accuracy non-increasing
#   in eps, near 0 at a huge eps, not raised by more steps or restarts, black-box Square not stronger than the
#   white-box attacks, no zero input gradients; the gap between the paper's attack and AutoAttack is reported.
#
# Only clean-correct examples are attacked (the clean forward pass runs once). Every accuracy comes with its n and a
# 95% Wilson interval.

# %% tags=["parameters"]
profile = "smoke"         # smoke | cpu | paper
classifiers = None        # e.g. ["generative", "softmax"]; None: the profile's (both)
norm = None               # "l2" (paper) | "linf"
eps_grid = None           # L2, e.g. [0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]; Linf e.g. [0, 0.0078, 0.0157, 0.0314]
n_test = None             # test images for clean accuracy and the paper's attacks over eps_grid
n_strong = None           # the first n_strong of them: AutoAttack, multi-targeted and the masking checks
strong_eps = None         # eps of the stronger attacks (Tab. 1: 0.5)
steps = None              # PGD steps of the paper's attacks and multi-targeted
restarts = None           # random-start restarts of the paper's attacks (1: start at x)
seed = None               # test-subset permutation and attack seeds
train_missing = True      # train / calibrate missing classifiers first (train-if-missing)
from_released = False     # attack the released models in results/<profile>/models/ instead (no training)

# %%
# %matplotlib inline
import time
import pandas as pd
from IPython.display import Markdown, display
import genrobust as gr

pd.set_option("display.max_colwidth", None)
t0 = time.time()

# %%
cfg = gr.params.notebook_profile("03_accuracy", globals())
data = gr.data.prepare_data(cfg.data)
paths = gr.classifiers.ensure_classifiers(cfg, data=data, train_missing=train_missing, from_released=from_released)
x, y = gr.accuracy.evaluation_set(data, cfg.eval)
display(Markdown(f"**Profile `{cfg.name}`** — {cfg.description}\n\n**Data:** {data.source['name']} "
                 f"(sha256 `{data.source['sha256']}`); {len(y)} of {len(data.test_y)} test images (seeded "
                 f"permutation, seed {cfg.eval.seed}); stronger attacks on the first {min(cfg.eval.n_strong, len(y))}."))
gr.tables.config_table(cfg, ["eval"])

# %% [markdown]
# ## Attacks (as units: what is done, what remains and its estimated cost first, then jobs)

# %%
records = gr.evaluation.evaluate(cfg, data, paths)  # units: kept under runs/eval/, a killed run resumes
checks = gr.checks.masking_checks(records, cfg.eval)

# %% [markdown]
# ### Tab. 1 — standard and robust accuracy at eps = 0.5 (L2): paper vs ours

# %%
gr.tables.tab1(records)

# %% [markdown]
# ### Fig. 1 — accuracy vs test eps
# Line: the paper's attack over the grid (band: 95% CI); X: the per-example worst case over all attacks where more than one ran;
# open markers: attacks run at one eps; stars: the paper's Tab. 1 (the paper gives Fig. 1 as a plot only).

# %%
fig = gr.plots.accuracy_vs_eps(records, gr.paper.TAB1,
                               path=gr.results_dir(cfg.name) / "figures" / "fig1_accuracy_vs_eps.png")

# %% [markdown]
# ### Gradient-masking checks
# `masking`: a failure means the robust accuracies are not trustworthy (masked gradients or a weak attack);
# `finding`: a result to report, not a failure. Noise in the paired comparisons is a one-sided exact McNemar test at 5%.

# %%
gr.tables.checks_table(checks)

# %% [markdown]
# ### Paired tests on the same images
# Both classifiers were attacked on the same test images, so their per-example results are compared directly
# (two-sided exact McNemar test): the generative vs the softmax classifier at every eps, under the paper's attacks and
# as the worst case; and the paper's attack vs AutoAttack on each classifier. The conclusion below judges the paper's
# claim by these tests.

# %%
gr.tables.paired_table(records)

# %% [markdown]
# ### Every run (n, 95% CI, attack settings, cost)

# %%
gr.tables.accuracy_table(records)

# %%
path = gr.metrics_files.write_accuracy_metrics(cfg, records, checks, data, wall_time_s=time.time() - t0,
                                              checkpoints=paths)
print("metrics written to", path)
print("released models (with these accuracies):", gr.classifiers.release(cfg, data, paths, records))

# %% [markdown]
# ## Conclusion (the verdicts stored in the metrics file, one rule for every claim: `genrobust.measure.claims`)

# %%
display(Markdown(gr.tables.accuracy_conclusion(gr.metrics_files.read_metrics(path)["verdicts"], checks)))
