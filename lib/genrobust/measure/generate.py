"""What generation computes (Tab. 2, Figs. 2-3; run by genrobust.pipeline.generation): the public surface of the
three generate_* modules below.

Generated samples and counterfactuals of the two classifiers, scored by FID (Section 3.3.2; Tab. 2, Figs. 2-3):
the public surface of three modules, one job each (callers write ``from genrobust.measure import generate`` and
``generate.generate(...)``, ``generate.score(...)``):

* :mod:`~genrobust.measure.generate_starts`: where generation starts: class-conditional seeds (a normal per class),
  the counterfactuals' test images and targets (:class:`Generated` holds them and what is made from them);
* :mod:`~genrobust.measure.generate_pgd`: targeted L2 PGD toward a class, its prefix chains, checks and units
  (:func:`generate`);
* :mod:`~genrobust.measure.generate_results`: FID / KID of every cell and the anchor (:func:`score`), Tab. 2's
  record, the panels of Figs. 2-3.
"""
from __future__ import annotations

from .generate_pgd import GenUnits, batches, generate, generation_unit, pgd_runs, targeted_pgd, unit_of
from .generate_results import FULL_N, SPEED_IMAGES, comparability, figure_panels, round_robin_order, score, \
    tab2_record
from .generate_starts import CF_TARGET_RULES, KINDS, ClassGaussian, Generated, class_counts, counterfactual_sources, \
    counterfactual_targets, sample_seeds, starting_images, starts_of

__all__ = ["KINDS", "CF_TARGET_RULES", "class_counts", "ClassGaussian", "sample_seeds", "counterfactual_sources",
           "counterfactual_targets", "Generated", "starting_images", "starts_of", "targeted_pgd", "pgd_runs",
           "GenUnits", "generation_unit", "batches", "unit_of", "generate", "SPEED_IMAGES", "score", "FULL_N",
           "comparability", "tab2_record", "figure_panels", "round_robin_order"]
