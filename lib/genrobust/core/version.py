"""The package version: the one place it is written (pyproject.toml reads it, CITATION.cff and CHANGELOG.md are
tested against it). Scheme in docs/versioning.md."""
__version__ = "0.7.1"
