"""Everything that touches disk.

Everything that touches disk: paths, atomic readers/writers per format, provenance records, checkpoints and
the one model loader (``load_model``; ``load_classifier`` is the evaluation contract), run keys, job executors.
Imports only genrobust.core.

Why the job executor lives here (executors.py, slurm.py, inflight.py, job_reports.py) and not in a room of its
own: a job's whole state is on disk (its run directories, their in-flight records, submitit's folder under runs/),
and training, measurement and the pipeline all fan out through it, so it sits in the lowest room they share; the
design's seven rooms (docs/layout.md) keep it there rather than adding an eighth.
"""
