"""Measurement of trained models: accuracy and its typed record, masking checks, generation, FID/KID, ablations, the
verdict engine.

Measurement of trained models: clean and robust accuracy with the worst case over attacks (``accuracy``), the
gradient-masking checks (``checks``), generated samples and counterfactuals (``generate``) scored by FID (``fid``),
and the ablation sweeps (``ablate``). Imports core, store, data and training.
"""
