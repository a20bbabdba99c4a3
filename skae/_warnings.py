"""Warnings attributed to the user's line of code, not to skae's or scikit-learn's."""

import concurrent.futures
import multiprocessing
import os
import sys
import threading
import warnings

import joblib
import sklearn

__all__ = ["warn_at_caller"]


def _directory(module):
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


_SKAE_DIR = _directory(sys.modules[__name__])
# Frames between the user's line and skae's: scikit-learn (its _fit_context, Pipeline,
# GridSearchCV), joblib (which runs GridSearchCV's fits, in sequence with n_jobs=1) and the
# standard library's thread and process pools.
_INTERNAL_PATHS = (
    _SKAE_DIR,
    _directory(sklearn),
    _directory(joblib),
    _directory(concurrent.futures),
    _directory(multiprocessing),
    os.path.abspath(threading.__file__),
)


def warn_at_caller(message, category):
    """``warnings.warn`` attributed to the user's line: the first frame outside skae,
    scikit-learn, joblib and the standard library's thread and process pools.

    Warnings then name the user's own line (``est.fit(X)``, ``pipeline.fit(X)`` or
    ``GridSearchCV(...).fit(X)``), not a line inside scikit-learn's ``_fit_context``
    wrapper or joblib's loop, so filters by module work. In a worker thread, whose stack
    does not reach the user's code, the warning names the line that called skae (the
    scikit-learn or joblib code that called the estimator's method).
    """
    frame, level = sys._getframe(1), 2
    caller_of_skae = None  # the level of the frame that called skae's outermost frame
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_PATHS):
        in_skae = frame.f_code.co_filename.startswith(_SKAE_DIR)
        frame, level = frame.f_back, level + 1
        if in_skae and frame is not None and not frame.f_code.co_filename.startswith(_SKAE_DIR):
            caller_of_skae = level
    if frame is None:  # every frame is internal: a worker thread's stack
        level = caller_of_skae if caller_of_skae is not None else 2
    warnings.warn(message, category, stacklevel=level)

