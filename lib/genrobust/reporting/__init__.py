"""What a reader sees, rendered from stored records only: tables, the metrics files, README's tables, the report,
figures.

What a reader sees: notebook tables and conclusions (``tables``), the metrics files with their one writer
and reader (``metrics_files``), the verdicts' one reader (``verdicts``), the reproduction report (``report``,
assembled from ``sections``, ``setting``, ``consistency`` and ``findings``), README's tables (``readme``), the
verdict changes (``changes``) and the figures (``plots``). Imports every room below it; not pipeline.
"""
