"""Everything that touches disk.

Everything that touches disk: paths, atomic readers/writers per format, provenance records, checkpoints and
the one model loader (``load_model``; ``load_classifier`` is the evaluation contract), run keys, job executors.
Imports only genrobust.core.
"""
