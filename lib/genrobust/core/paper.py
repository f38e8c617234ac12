"""The paper's reported numbers, written once, each with its source (Yin, *Generative Robust Classification*).

Everything that shows "paper vs ours" reads from here; nothing else in the project types a paper number.
Accuracies are fractions in [0, 1]; FID is unitless.
"""
from __future__ import annotations

# Tab. 1: CIFAR-10 standard and robust accuracy (eps_test = 0.5, L2).
TAB1 = {
    "source": "Table 1",
    "eps": 0.5,
    "generative": {"clean": 0.8812, "robust": 0.7227},
    "softmax": {"clean": 0.9083, "robust": 0.7017},
}

# Tab. 2: FID of generated samples and counterfactuals, per PGD configuration (steps, step size).
TAB2 = {
    "source": "Table 2",
    (7, 1.0): {"generative": {"samples": 50.38, "counterfactuals": 37.92},
               "softmax": {"samples": 61.84, "counterfactuals": 43.65}},
    (10, 1.0): {"generative": {"samples": 54.78, "counterfactuals": 42.33},
                "softmax": {"samples": 66.15, "counterfactuals": 50.85}},
}

# Tab. 3: generative classifier accuracy before/after calibration.
TAB3 = {
    "source": "Table 3",
    "before": {"train": 0.9525, "test": 0.8812},
    "after": {"train": 0.9543, "test": 0.8815},
}

# Tab. 4: learned calibration constants c_1..c_10 (class order of CIFAR-10).
TAB4 = {
    "source": "Table 4",
    "c": (-0.068, -0.015, 0.066, 0.067, -0.037, 0.066, -0.068, -0.067, -0.058, 0.062),
}

# Section 3.1: training setup (for "what differs" columns).
SETUP = {
    "source": "Section 3.1",
    "binary_model": "ResNet18Thinner (ResNet18, width 0.5)",
    "softmax_model": "ResNet50 (robustness library, L2 eps 0.5)",
    "epochs": 2000,
    "train_eps": 0.3,
    "data": "CIFAR-10 (original)",
    "selection": "early stopping on the test set",
}

# Figs. 5-8: qualitative claims of the ablations (the paper gives curves, not tables).
ABLATION_CLAIMS = {
    "fig5_capacity": ("Figure 5", "higher-capacity models are more robust (higher adversarial AUROC)"),
    "fig5_weight_decay": ("Figure 5", "weight decay 1e-4 improves adversarial AUROC"),
    "fig6_train_eps": ("Figure 6", "larger training eps lowers clean AUROC and raises adversarial AUROC"),
    "fig7_augmentation": ("Figure 7", "AutoAugment (+Cutout) improves adversarial AUROC"),
    "fig8_combined": ("Figure 8", "combined in/out AT raises adversarial AUROC at the cost of clean AUROC"),
}


# Every claim of the paper that a notebook tests, by id: (source, statement, direction). ``direction`` is the sign
# the paper gives the tested effect, which genrobust.measure.claims defines per claim (a difference, first minus
# second, as written in the statement): +1 = the first is higher, -1 = the first is lower.
CLAIMS = {
    "tab1_clean": ("Table 1", "the generative classifier's clean accuracy is lower than the softmax classifier's "
                   "(effect: generative - softmax)", -1),
    "tab1_robust": ("Table 1 and Figure 1", "the generative classifier's robust accuracy is higher than the softmax "
                    f"classifier's at L2 eps >= {TAB1['eps']:g} (effect: generative - softmax, per eps, same attack "
                    "set)", +1),
    "protocol_attack": ("Section 3.2 (Eq. 10, Eq. 11-12)", "the paper's attacks measure robust accuracy: AutoAttack does not "
                        "find more adversarial examples (effect: accuracy under the paper's attack - under "
                        "AutoAttack, per classifier and eps)", -1),
    "tab2_fid": ("Table 2", "the generative classifier's samples and counterfactuals have lower FID than the softmax "
                 "classifier's (effect: FID generative - FID softmax, per cell)", -1),
    "tab3_calibration": ("Table 3", "calibration does not lower test accuracy (effect: after - before)", +1),
    **{key: (source, f"{text} (effect: expected higher - expected lower, per comparison)", +1)
       for key, (source, text) in ABLATION_CLAIMS.items()},
}
