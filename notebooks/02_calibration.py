# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 — Calibration of the generative classifier (Eq. 7; Tab. 3, Tab. 4, Fig. 4)
# Paper: Section 3.4.1. g(x) = argmax_k d_k(x) + c_k. With all d_k frozen, c (K,) is learned by minimizing the
# cross-entropy of Eq. 7 on the training set, starting from c = 0, with early stopping on the selection split.
# d_k outputs are computed once and cached. The calibrated classifier is saved for `genrobust.load_classifier`.

# %% tags=["parameters"]
profile = "smoke"
select_on = None          # test (paper) | val | train
train_missing = True      # train any missing d_k first (train-if-missing)

# %%
# %matplotlib inline
import pandas as pd
from IPython.display import Markdown, display
import genrobust as gr

# %%
cfg = gr.params.notebook_profile("02_calibration", globals())
data = gr.data.prepare_data(cfg.data)
if train_missing:
    gr.classifiers.train_all(cfg)
cal = gr.calibrate.calibrate(cfg, data)
display(Markdown(f"Calibration selected on **{cal['select_on']}** after {cal['steps']} Adam steps; "
                 f"train n = {cal['n']['train']}, test n = {cal['n']['test']}; data: {data.source['name']}"))

# %% [markdown]
# ### Tab. 3 — accuracy before and after calibration (paper vs ours)

# %%
gr.tables.tab3(cal)

# %% [markdown]
# ### Tab. 4 — learned calibration constants c_k (paper vs ours)

# %%
gr.tables.tab4(cal)

# %% [markdown]
# ### Fig. 4 — d_k on class-k samples vs other-class samples (k = 1, 2, 3 in the paper's 1-based numbering)

# %%
s_test, y_test = cal["_scores"]["test"]
fig = gr.plots.score_histograms(s_test, y_test, classes=(0, 1, 2), class_names=gr.data.CLASSES,
                                path=gr.results_dir(cfg.name) / "figures" / "fig4_histograms.png")

# %%
clf = gr.load_classifier(cal["checkpoint"])
print(type(clf).__name__, "loaded from", cal["checkpoint"])
path = gr.metrics_files.write_calibration_metrics(cfg, cal)
print("metrics written to", path)
print("released models:", gr.classifiers.release(cfg, data))
