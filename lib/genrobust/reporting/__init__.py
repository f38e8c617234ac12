"""What a reader sees: notebook tables and conclusions (``tables``), the metrics files with their one writer
and reader (``metrics_files``), the reproduction report (``report``) and the figures (``plots``). Imports every
room below it; not pipeline.
"""
