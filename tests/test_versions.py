"""Environment fingerprint and version-warning capture, with real scikit-learn pickles."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import pytest
import sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from pytest_persist.environments.fingerprint import environment_fingerprint
from pytest_persist.environments.version_warnings import (
    VersionSkewError,
    capture_version_warnings,
    parse_version_warning,
)

# scikit-learn's own test class (sklearn/tests/test_base.py): its pickle claims version
# "something". Only classes living in sklearn.* modules get the version check, so a copy
# defined here would never warn.
TreeBadVersion = pytest.importorskip("sklearn.tests.test_base").TreeBadVersion


def skewed_pickle(estimator, old: str = "1.0.2") -> bytes:
    """A real pickle of ``estimator`` whose every ``_sklearn_version`` reads ``old``."""
    current = sklearn.__version__.encode()
    assert len(old) == len(current)  # same length: the pickle's length prefixes stay valid
    data = pickle.dumps(estimator, protocol=5)
    assert data.count(current) >= 1
    return data.replace(current, old.encode())


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def test_fingerprint_has_python_platform_and_libraries():
    fingerprint = environment_fingerprint()
    for key in ("python", "implementation", "platform", "machine"):
        assert fingerprint[key]
    assert fingerprint["scikit-learn"] == sklearn.__version__
    assert fingerprint["pytest-persist"]
    assert "numpy" in fingerprint and "joblib" in fingerprint


def test_fingerprint_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from pytest_persist.environments.fingerprint import environment_fingerprint\n"
        "before = set(sys.modules)\n"
        "fp = environment_fingerprint()\n"
        "heavy = {'sklearn', 'scipy', 'pandas', 'onnxruntime', 'skl2onnx', 'skops'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "assert not new & (heavy | {'numpy', 'joblib', 'cloudpickle'}), new\n"
        "assert 'scikit-learn' in fp\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_inconsistent_version_warning_is_recorded(iris):
    data = pickle.dumps(TreeBadVersion().fit(*iris))
    with capture_version_warnings() as records:
        pickle.loads(data)
    assert len(records) == 1
    record = records[0]
    assert record.estimator == "TreeBadVersion"
    assert record.original_version == "something"
    assert record.current_version == sklearn.__version__
    assert record.category == "InconsistentVersionWarning"


def test_every_nested_estimator_warning_is_recorded(iris):
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(*iris)
    model = make_pipeline(StandardScaler(), forest).fit(*iris)
    data = skewed_pickle(model)
    with capture_version_warnings() as records:
        pickle.loads(data)
    names = [r.estimator for r in records]
    # Pipeline, StandardScaler, RandomForestClassifier and its 3 trees (plus the template).
    assert names.count("DecisionTreeClassifier") >= 3
    assert {"Pipeline", "StandardScaler", "RandomForestClassifier"} <= set(names)
    assert {(r.original_version, r.current_version) for r in records} == {
        ("1.0.2", sklearn.__version__)
    }


def test_repeats_recorded_even_if_already_shown_once(iris):
    data = pickle.dumps(TreeBadVersion().fit(*iris))
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # the registry would hide a repeat
        for _ in range(2):
            with capture_version_warnings() as records:
                pickle.loads(data)
                pickle.loads(data)
            assert len(records) == 2


class OldStyleEstimator(DecisionTreeClassifier):
    """Warns like scikit-learn < 1.3 did: a plain UserWarning."""

    def __setstate__(self, state):
        pickle_version = state.pop("_sklearn_version", "pre-0.18")
        warnings.warn(
            f"Trying to unpickle estimator {type(self).__name__} from version {pickle_version}"
            f" when using version 1.2.2. This might lead to breaking code or invalid results."
            " Use at your own risk. For more info please refer to:\n"
            "https://scikit-learn.org/stable/model_persistence.html"
            "#security-maintainability-limitations",
            UserWarning,
            stacklevel=2,
        )
        self.__dict__.update(state)


def test_old_style_user_warning_is_parsed(iris):
    data = pickle.dumps(OldStyleEstimator(max_depth=2).fit(*iris))
    with capture_version_warnings() as records:
        loaded = pickle.loads(data)
    assert loaded.max_depth == 2
    [record] = records
    assert record.estimator == "OldStyleEstimator"
    assert record.original_version == "pre-0.18"  # not an sklearn.* class: no version stored
    assert record.current_version == "1.2.2"
    assert record.category == "UserWarning"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Trying to unpickle estimator LinearSVC from version 0.23.2 when using version"
            " 1.0.2. This might lead to breaking code or invalid results. Use at your own risk.",
            ("LinearSVC", "0.23.2", "1.0.2"),
        ),
        (
            "Trying to unpickle estimator Tree from version pre-0.18 when using version 0.22."
            " This might lead to breaking code or invalid results. Use at your own risk.",
            ("Tree", "pre-0.18", "0.22"),
        ),
        (
            "Trying to unpickle estimator SVC from version 1.1.0rc1 when using version "
            "1.2.dev0. This might lead to breaking code or invalid results. Use at your own "
            "risk. For more info please refer to:\nhttps://scikit-learn.org/stable/"
            "model_persistence.html#security-maintainability-limitations",
            ("SVC", "1.1.0rc1", "1.2.dev0"),
        ),
    ],
)
def test_parse_old_style_messages(message, expected):
    record = parse_version_warning(UserWarning(message), UserWarning)
    assert (record.estimator, record.original_version, record.current_version) == expected


def test_other_warnings_are_not_version_warnings():
    assert parse_version_warning(UserWarning("something else"), UserWarning) is None
    text = "Trying to unpickle estimator X from version 1 when using version 2. This might lead"
    assert parse_version_warning(DeprecationWarning(text), DeprecationWarning) is None


def test_other_warnings_are_reemitted_untouched(iris):
    data = pickle.dumps(TreeBadVersion().fit(*iris))
    with (
        pytest.warns(RuntimeWarning, match="unrelated") as seen,
        capture_version_warnings() as records,
    ):
        warnings.warn("unrelated", RuntimeWarning, stacklevel=1)
        pickle.loads(data)
    assert len(records) == 1
    assert [type(w.message) for w in seen] == [RuntimeWarning]
    assert seen[0].filename == __file__


def test_other_warnings_keep_the_callers_filters():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeWarning, match="unrelated"), capture_version_warnings():
            warnings.warn("unrelated", RuntimeWarning, stacklevel=1)


def test_error_mode_raises_at_the_first_one(iris):
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(*iris)
    data = skewed_pickle(forest)
    seen = []
    with (
        pytest.raises(VersionSkewError) as info,
        capture_version_warnings("error", on_record=seen.append) as records,
    ):
        pickle.loads(data)
    assert len(records) == 1 and seen == records
    message = str(info.value)
    assert records[0].estimator in message
    assert "1.0.2" in message and sklearn.__version__ in message


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="record"), capture_version_warnings("ignore"):
        pass
