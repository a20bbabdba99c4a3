"""skae's version (read by ``skae.__version__``, the pickles and the packaging metadata)."""

__version__ = "0.1.0"
