"""Measurement of trained models: clean and robust accuracy with the worst case over attacks (``accuracy``), the
gradient-masking checks (``checks``), generated samples and counterfactuals (``generate``) scored by FID (``fid``),
the ablation sweeps (``ablate``) and the verdict engine (``claims``). Imports core, store, data and training.
"""
