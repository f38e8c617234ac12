"""The paper's mathematics, no I/O.

The paper's mathematics, with no I/O: configs and profiles, the paper's reported numbers, models (Eq. 7),
attacks (PGD family, Eq. 11-12, multi-targeted, AutoAttack) and their registry, the training objectives (Eq. 3,
Eq. 9, softmax PGD-AT), d_k scoring (AUROC), statistics and number formatting, and older files in today's form
(``upgrade``). Imports nothing else of genrobust.
"""
