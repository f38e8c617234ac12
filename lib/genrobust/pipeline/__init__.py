"""Orchestration: train-if-missing classifiers (``classifiers.ensure_classifiers``), notebook parameters ->
profile (``params``), notebooks through papermill (``notebooks``). Imports every room below it; not reporting.
"""
