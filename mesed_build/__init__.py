"""mesed-build: the rebuildable pipeline behind a MESED-style multi-modal Entity Set Expansion dataset."""

__version__ = "0.1.0"
