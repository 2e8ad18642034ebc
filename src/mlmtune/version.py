"""The package version, in a module of its own: run.json, the card and `--version` read it without
importing the package's API (and so without an import cycle through `mlmtune/__init__.py`)."""

__version__ = "0.1.0"
