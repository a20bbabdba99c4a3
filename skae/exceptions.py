"""The warnings and errors skae raises.

Every warning of skae's own is a :class:`SkaeWarning`, itself a :class:`UserWarning`, so
one filter silences or raises them all::

    import warnings
    from skae.exceptions import SkaeWarning

    warnings.simplefilter("error", SkaeWarning)

Fits that stop before they converge warn with scikit-learn's
:class:`~sklearn.exceptions.ConvergenceWarning`, as scikit-learn's own estimators do.
"""

__all__ = [
    "ConstantCodesWarning",
    "FitInterruptedWarning",
    "NonFiniteLossError",
    "PickleVersionWarning",
    "SkaeWarning",
    "UnlabelledMarkerWarning",
]


class SkaeWarning(UserWarning):
    """Base class of skae's own warnings.

    A subclass of :class:`UserWarning`, so existing filters apply. Fits that do not
    converge warn with scikit-learn's :class:`~sklearn.exceptions.ConvergenceWarning`
    instead.

    Examples
    --------
    >>> from skae.exceptions import FitInterruptedWarning, SkaeWarning
    >>> issubclass(FitInterruptedWarning, SkaeWarning), issubclass(SkaeWarning, UserWarning)
    (True, True)
    """


class FitInterruptedWarning(SkaeWarning):
    """A fit was interrupted (Ctrl-C); the last accepted parameters were kept."""


class PickleVersionWarning(SkaeWarning):
    """A model is loaded with another skae version than the one that pickled it."""


class ConstantCodesWarning(SkaeWarning):
    """A layer of a stack learned nearly constant codes.

    Its weight decay is too strong for the spread of its input (the stacking guide
    gives the bound): lower ``alpha`` for that layer.
    """


class UnlabelledMarkerWarning(SkaeWarning):
    """The rows treated as unlabelled look like a class.

    The rows a :class:`~skae.StackedAutoencoderClassifier` fit treats as unlabelled (their
    label is its ``unlabelled`` marker, -1 by default) are no more numerous than the rows
    of its largest class. If the marker is a class, pass ``unlabelled=None``.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from skae import StackedAutoencoderClassifier
    >>> from skae.exceptions import UnlabelledMarkerWarning
    >>> X = np.random.default_rng(0).random((60, 8))
    >>> y = np.array([-1, 0, 1] * 20)  # -1 as frequent as each class: a class?
    >>> clf = StackedAutoencoderClassifier((4,), max_iter=5, softmax_max_iter=5,
    ...                                    fine_tune=None)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = clf.fit(X, y)
    >>> any(issubclass(w.category, UnlabelledMarkerWarning) for w in caught)
    True
    >>> clf.classes_.tolist()
    [0, 1]
    """


class NonFiniteLossError(FloatingPointError, ValueError):
    """The objective became NaN or infinite during optimisation.

    A subclass of :class:`FloatingPointError` and :class:`ValueError`. No parameters are
    kept from the fit: scale the input, or lower ``beta`` / raise ``alpha``.
    """
