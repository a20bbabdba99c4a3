"""The stacked classifier at the edges of its input: the unlabelled marker against real
classes, label types, memory-mapped data with unlabelled rows, and parameter checks."""

import tracemalloc

import numpy as np
import pytest
import threadpoolctl
from sklearn.datasets import load_digits
from sklearn.exceptions import DataConversionWarning
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_classifiers_classes

from skae import StackedAutoencoder, StackedAutoencoderClassifier
from skae._stacked import UnlabelledMarkerWarning

no_convergence = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
no_constant_codes = pytest.mark.filterwarnings("ignore::skae.exceptions.ConstantCodesWarning")
pytestmark = [no_convergence, no_constant_codes]  # short fits: the labels are tested

SHORT = dict(max_iter=3, softmax_max_iter=3, fine_tune_max_iter=3, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:120] / 16.0, y[:120]


# --------------------------------------------------------------------------- -1 labels
def test_minus_one_and_one_other_label_is_an_error_naming_unlabelled_none(digits):
    """SVM-style labels {-1, 1}: dropping -1 would leave one class."""
    X = digits[0][:60]
    signs = np.array([-1, 1] * 30)
    with pytest.raises(ValueError, match=r"labels, -1 and 1.*pass unlabelled=None"):
        StackedAutoencoderClassifier((4,), **SHORT).fit(X, signs)
    model = StackedAutoencoderClassifier((4,), unlabelled=None, **SHORT).fit(X, signs)
    assert model.classes_.tolist() == [-1, 1]


def test_minus_one_as_frequent_as_a_class_warns_naming_unlabelled_none(digits):
    """The rule: marked rows no more numerous than the largest class look like a class
    (a warning); more numerous, they are the unlabelled rows of semi-supervised data."""
    X, y_digits = digits
    y = np.array([-1, 0, 1] * 20)
    model = StackedAutoencoderClassifier((4,), **SHORT)
    with pytest.warns(UnlabelledMarkerWarning, match=r"20 rows labelled -1.*no more than "
                      r"the 20 rows of the largest class, 0.*pass unlabelled=None") as record:
        model.fit(X[:60], y)
    assert record[0].filename == __file__  # at the caller's line
    assert model.classes_.tolist() == [0, 1]  # the rule is stated: -1 stays the marker
    as_class = StackedAutoencoderClassifier((4,), unlabelled=None, **SHORT).fit(X[:60], y)
    assert as_class.classes_.tolist() == [-1, 0, 1]
    # a string marker among string labels follows the same rule
    names = np.array(["?", "cat", "dog"] * 20)
    with pytest.warns(UnlabelledMarkerWarning, match="rows labelled '\\?'"):
        StackedAutoencoderClassifier((4,), unlabelled="?", **SHORT).fit(X[:60], names)
    # No warning (an error here): more unlabelled rows than rows of any class, or the
    # integer -1 among string labels (rare, but it cannot be one of these classes).
    y_partial = np.where(np.arange(len(y_digits)) % 3 == 0, y_digits, -1)  # 40 of 120
    semi = StackedAutoencoderClassifier((4,), **SHORT).fit(X, y_partial)
    assert semi.classes_.tolist() == list(range(10))
    names = np.array(["cat", "dog"] * 60, dtype=object)
    names[:3] = -1
    strings = StackedAutoencoderClassifier((4,), **SHORT).fit(X, names)
    assert strings.classes_.tolist() == ["cat", "dog"]


def test_default_classifier_deviates_from_the_checks_only_as_declared():
    """The deviation test_common.py declares: with the default unlabelled=-1 the labels
    {-1, 1} of check_classifiers_classes leave one class, and the error says what to do."""
    settings = dict(hidden_layer_sizes=(6, 4), max_iter=15, softmax_max_iter=30,
                    fine_tune_max_iter=40)
    with pytest.raises(ValueError, match="pass unlabelled=None"):
        check_classifiers_classes(
            "StackedAutoencoderClassifier", StackedAutoencoderClassifier(**settings)
        )
    check_classifiers_classes(  # passes once -1 is a class
        "StackedAutoencoderClassifier", StackedAutoencoderClassifier(unlabelled=None, **settings)
    )


# --------------------------------------------------------------------------- label types
@pytest.mark.parametrize(
    "labels",
    [
        ["a", 1] * 30,
        np.array(["a", 1] * 30, dtype=object),
        np.array(["a", "b", 1, -1] * 15, dtype=object),  # the marker aside, still mixed
    ],
    ids=["list", "object-array", "object-array-with-marker"],
)
def test_mixed_string_and_number_labels_are_a_type_error(digits, labels):
    X = digits[0][:60]
    with pytest.raises(TypeError, match=r"mixes string and numeric labels \(e.g. 'a' and 1\)"):
        StackedAutoencoderClassifier((4,), **SHORT).fit(X, labels)


def test_the_mixed_labels_message_shows_plain_values(digits):
    """The string example of an object array's labels is shown as 'b', not np.str_('b')."""
    X = digits[0][:60]
    labels = np.array([np.str_("b"), 1] * 30, dtype=object)
    with pytest.raises(TypeError, match=r"\(e.g. 'b' and 1\)"):
        StackedAutoencoderClassifier((4,), **SHORT).fit(X, labels)


@pytest.mark.parametrize(
    "container", [list, lambda v: np.array(v, dtype=object)], ids=["list", "object-array"]
)
@pytest.mark.parametrize(
    "missing", [float("nan"), np.float32("nan"), None], ids=["nan", "nan32", "none"]
)
def test_a_missing_label_is_refused_as_missing_not_as_a_mixed_type(digits, container, missing):
    """A missing label among string labels: NaN or None is not a class, and the message
    says how to mark the row (NaN once got "y mixes string and numeric labels" with
    advice to make a string array, which made 'nan' a class; None a bare TypeError)."""
    X = digits[0][:60]
    labels = container(["a", missing, "b"] * 20)
    with pytest.raises(ValueError, match=r"y contains missing labels.*mark the rows without "
                                         r"a label with -1") as caught:
        StackedAutoencoderClassifier((4,), **SHORT).fit(X, labels)
    assert "dtype=str" not in str(caught.value)
    with pytest.raises(ValueError, match=r"y contains missing labels.*drop those rows"):
        StackedAutoencoderClassifier((4,), unlabelled=None, **SHORT).fit(X, labels)


@pytest.mark.parametrize("dtype", [object, "string", "float64", "Int64"])
def test_a_pandas_missing_label_is_refused_with_the_same_advice(digits, dtype):
    """pandas marks a missing label NaN or NA, whatever the column's dtype."""
    pd = pytest.importorskip("pandas", reason="pandas is an optional extra")
    X = digits[0][:60]
    values = ["a", None, "b"] if dtype in (object, "string") else [0, None, 1]
    labels = pd.Series(values * 20, dtype=dtype)
    with pytest.raises(ValueError, match=r"y contains missing labels.*with -1"):
        StackedAutoencoderClassifier((4,), **SHORT).fit(X, labels)


def test_string_minus_one_labels_are_told_about_unlabelled_none(digits):
    """{'-1', '1'} read as text: the advice includes unlabelled=None, the fix that works."""
    X = digits[0][:60]
    labels = ["-1", "1"] * 30
    with pytest.raises(ValueError, match=r"set unlabelled=None if '-1' is a class"):
        StackedAutoencoderClassifier((4,), **SHORT).fit(X, labels)
    model = StackedAutoencoderClassifier((4,), unlabelled=None, **SHORT).fit(X, labels)
    assert model.classes_.tolist() == ["-1", "1"]


def test_one_class_among_many_unlabelled_rows_asks_for_labelled_rows(digits):
    """More rows marked -1 than labelled ones: semi-supervised data, so the message asks
    first for labelled rows of two classes (-1 as a class, as in imbalanced {-1, 1}
    labels, comes second)."""
    X = digits[0][:60]
    labels = np.full(60, -1)
    labels[0] = 0
    with pytest.raises(ValueError, match=r"the only labelled row has class 0 \(the other "
                                         r"59 rows are labelled -1, unlabelled\). Give "
                                         r"labelled rows of at least two classes \(or, if -1 "
                                         r"is itself a class, pass unlabelled=None\)"):
        StackedAutoencoderClassifier((4,), **SHORT).fit(X, labels)
    labels[:3] = 0
    with pytest.raises(ValueError, match=r"the 3 labelled rows all have class 0"):
        StackedAutoencoderClassifier((4,), **SHORT).fit(X, labels)


def test_a_list_keeps_the_types_of_its_labels_and_of_the_marker(digits):
    """A plain list of string labels with the integer -1 for unlabelled rows, or of
    integer labels with a string marker: the marker is recognised and the classes keep
    their type (a string array made of the list would have read -1 as the class '-1' and
    the integers as strings)."""
    X, y = digits[0][:60], digits[1][:60]
    text = [-1 if i % 3 == 0 else f"digit {v}" for i, v in enumerate(y)]
    model = StackedAutoencoderClassifier((4,), **SHORT).fit(X, text)
    labelled = [v for i, v in enumerate(y) if i % 3]
    assert model.classes_.tolist() == sorted({f"digit {v}" for v in labelled})
    assert model.predict(X[:5]).tolist()[0].startswith("digit ")
    numeric = ["none" if i % 3 == 0 else int(v) for i, v in enumerate(y)]
    model = StackedAutoencoderClassifier((4,), unlabelled="none", **SHORT).fit(X, numeric)
    assert model.classes_.dtype.kind == "i"
    assert model.classes_.tolist() == sorted(set(labelled))
    online = StackedAutoencoderClassifier((4,), solver="adam", **SHORT)
    online.partial_fit(X, text, classes=[f"digit {d}" for d in range(10)])
    online = StackedAutoencoderClassifier((4,), solver="adam", unlabelled="none", **SHORT)
    online.partial_fit(X, numeric, classes=model.classes_)
    assert online.classes_.tolist() == model.classes_.tolist()
    # a column of labels too (scikit-learn ravels it, with its warning)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        column = StackedAutoencoderClassifier((4,), unlabelled="none", **SHORT).fit(
            X, [[v] for v in numeric])
    assert column.classes_.tolist() == model.classes_.tolist()
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        column = StackedAutoencoderClassifier((4,), **SHORT).fit(X, [[v] for v in text])
    assert column.classes_.tolist() == sorted({f"digit {v}" for v in labelled})


# --------------------------------------------------------------------------- memmap
def test_unlabelled_rows_of_a_memmap_are_not_copied(tmp_path):
    """A read-only memmap with a quarter of its rows unlabelled (scattered): the supervised
    stages read the labelled rows a block at a time, so the fit's peak heap stays far below
    the copy of the labelled rows (0.75 of X) that indexing X with them would make."""
    rng = np.random.RandomState(0)
    m, n = 48_000, 128  # 49 MB; a gathered block holds at most 2**20 values (8 MB)
    np.save(tmp_path / "X.npy", rng.uniform(0.0, 1.0, (m, n)))
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    y = rng.randint(0, 10, m)  # 7.5% of the rows per class: the -1 rows are unlabelled
    y[rng.permutation(m)[: m // 4]] = -1
    model = StackedAutoencoderClassifier(
        (4,), max_iter=2, softmax_max_iter=2, fine_tune_max_iter=2, random_state=0
    )  # fine_tune="all": the softmax stage (frozen encoder), then every layer
    model.fit(np.asarray(X[:500]), y[:500])  # the first fit's imports are not measured
    # one worker thread, so one gathered block at a time (each worker gathers its own)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        tracemalloc.start()
        try:
            model.fit(X, y)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert model.stage_n_iter_["fine_tuning"] == 2  # both supervised stages ran
    assert peak < 0.4 * X.nbytes, peak / X.nbytes  # measured: 0.21


# --------------------------------------------------------------------------- parameters
def test_warm_start_after_a_change_in_the_number_of_features_says_so(digits):
    X, y = digits
    model = StackedAutoencoderClassifier((4,), warm_start=True, **SHORT).fit(X, y)
    with pytest.raises(ValueError, match=r"warm_start=True cannot continue from the previous "
                       r"fit: it had n_features=64, now X has 60 features"):
        model.fit(X[:, :60], y)
    assert model.n_features_in_ == 64  # the failed fit kept the model


@pytest.mark.parametrize("Estimator", [StackedAutoencoder, StackedAutoencoderClassifier])
@pytest.mark.parametrize(
    "sizes, match",
    [({3, 2}, "got a set, {2, 3}, which has no order"),
     (frozenset({3}), "which has no order"),
     ([[3, 2]], r"flat sequence of ints.*nested \[\[3, 2\]\]"),
     ((3, (2,)), "nested"),
     (np.array([[3, 2]]), r"the nested \[\[3, 2\]\]\.")],
    ids=["set", "frozenset", "nested-list", "nested-tuple", "2-d-array"],
)
def test_unordered_or_nested_hidden_layer_sizes_are_rejected(digits, Estimator, sizes, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        Estimator(sizes, max_iter=2).fit(X, y)


@pytest.mark.parametrize("marker", [True, False])
def test_a_bool_is_not_an_unlabelled_marker(digits, marker):
    X, y = digits
    with pytest.raises(InvalidParameterError, match=f"got {marker}: a bool would mark"):
        StackedAutoencoderClassifier((4,), unlabelled=marker, **SHORT).fit(X, y % 2)


@pytest.mark.parametrize("name", ["softmax_max_iter", "fine_tune_max_iter"])
def test_a_bool_is_not_a_stage_count(digits, name):
    """``True`` passes ``Interval(Integral, 1, ...)`` as 1; the stage counts refuse it as
    every layer's ``max_iter`` does, in ``fit`` and ``partial_fit``."""
    X, y = digits
    settings = dict(SHORT, **{name: True})
    match = rf"'{name}' parameter of StackedAutoencoderClassifier must be an int, got the bool"
    with pytest.raises(InvalidParameterError, match=match):
        StackedAutoencoderClassifier((4,), **settings).fit(X, y)
    with pytest.raises(InvalidParameterError, match=match):
        StackedAutoencoderClassifier((4,), solver="adam", **settings).partial_fit(
            X, y, classes=np.arange(10))


def test_messages_print_classes_and_sizes_as_plain_values(digits):
    X, y = digits
    model = StackedAutoencoderClassifier((4,), **SHORT)
    with pytest.raises(ValueError, match="only one class") as single:
        model.fit(X, np.full(len(y), 3))
    assert "has class 3." in str(single.value)
    model.set_params(warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="cannot continue") as changed:
        model.fit(X[y < 5], y[y < 5])
    assert "classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], now (4,) and [0, 1, 2, 3, 4]" in str(
        changed.value
    )
    with pytest.raises(ValueError, match="positive ints") as sizes:
        StackedAutoencoderClassifier((np.int64(3), np.int64(0)), **SHORT).fit(X, y)
    assert "got (3, 0)." in str(sizes.value)
    for error in (single, changed, sizes):
        assert "np." not in str(error.value)
