"""The former home of skae's warnings and errors, kept so that old import paths and
warning filters (``skae._base.FitInterruptedWarning``) keep working.

They live in the public :mod:`skae.exceptions`; import them from there.
"""

from .exceptions import (  # noqa: F401
    FitInterruptedWarning,
    NonFiniteLossError,
    PickleVersionWarning,
    SkaeWarning,
)
