# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 — Report: the paper's numbers beside ours
# Reads **only** the metrics files notebooks 01-05 wrote into `results/<profile>/` (no training, no attacks; seconds).
# Every row gives the paper's value (`genrobust.paper`), ours, the difference (ours minus paper) and what differs in
# the setting — derived from the config recorded in the results file against the `paper` profile, and from the
# recorded data source. A notebook not yet run for this profile shows "not run yet". The same report is written as
# `results/<profile>/REPORT.md` (also: `genrobust report --profile <profile>`).

# %% tags=["parameters"]
profile = "smoke"        # smoke | cpu | paper

# %%
# %matplotlib inline
import pandas as pd
from IPython.display import Markdown, display
from genrobust import metrics_files, report, results_dir

pd.set_option("display.max_colwidth", None)
metrics_files.write_verdicts(results_dir(profile))  # every verdict re-derived from the files' evidence (verdicts.json)
ov = report.build(profile)
display(Markdown(f"**Profile `{ov.profile}`**, results in `{ov.directory}`; report code at commit `{ov.commit}`."))
ov.status

# %%
display(Markdown("\n".join(f"- {n}" for n in ov.consistency) or "All results files agree on the classifiers' "
                 "settings and come from one commit."))

# %% [markdown]
# ## Tab. 1 — standard and robust accuracy (L2)
# The paper's attack, and the per-example worst case over every attack run at that eps (notebook 03).

# %%
ov.show("tab1")

# %% [markdown]
# ## Fig. 1 — accuracy vs test eps
# The paper gives a plot; its only numbers are Tab. 1's.

# %%
ov.show("fig1")

# %% [markdown]
# ## Tab. 2 — FID of generated samples and counterfactuals
# FID at small N is biased upward: see the 'comparable with' column (notebook 04).

# %%
ov.show("tab2")

# %% [markdown]
# ## Tab. 3 — accuracy before and after calibration
# Notebook 02 (with Fig. 4).

# %%
ov.show("tab3")

# %% [markdown]
# ## Tab. 4 — calibration constants c_k
# Notebook 02.

# %%
ov.show("tab4")

# %% [markdown]
# ## Figs. 5-8 — the ablation claims and our verdicts
# Notebook 05.

# %%
ov.show("claims")

# %% [markdown]
# ## Setting: ours vs the paper profile (every recorded value that differs, per results file)

# %%
ov.settings

# %% [markdown]
# ## Provenance: where every number comes from

# %%
ov.provenance

# %%
path = report.write_report(ov)
print("report written to", path)
