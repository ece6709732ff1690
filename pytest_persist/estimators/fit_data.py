"""Estimator instances and fitting data for persistence sweeps, built from estimator tags.

Pytest-free. ``make_fit_data(estimator)`` returns ``(X, y)`` such that ``estimator.fit(X, y)``
succeeds and the estimator's prediction methods run on ``X``; the kind of data is read from the
estimator's tags (``sklearn.utils.get_tags`` on scikit-learn >= 1.6, the ``_get_tags()`` dict on
1.0-1.5), as scikit-learn's ``_enforce_estimator_tags_X/_y`` and skops' persistence tests do.
``default_instances()`` builds every estimator ``all_estimators()`` lists, with small defaults
for those that need arguments; what cannot be built is named in ``NOT_BUILT``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # scikit-learn >= 1.6
    from sklearn.utils import get_tags as _get_tags_new
except ImportError:  # scikit-learn 1.0-1.5: the _get_tags() dict
    _get_tags_new = None

__all__ = [
    "NOT_BUILT",
    "N_FEATURES",
    "DataTags",
    "data_tags",
    "default_instances",
    "make_categorical_data",
    "make_fit_data",
    "required_width",
]

#: Number of columns of every numeric X made here (SparseCoder's dictionary must match it).
N_FEATURES = 5

#: Estimators listed by ``all_estimators()`` that ``default_instances()`` could not build,
#: name -> reason. Refilled by each call of ``default_instances()``.
NOT_BUILT: dict[str, str] = {}

_WORDS = [
    "model",
    "data",
    "persist",
    "pickle",
    "load",
    "save",
    "tree",
    "forest",
    "linear",
    "kernel",
    "vector",
    "sample",
    "feature",
    "label",
    "score",
    "fit",
    "predict",
    "transform",
    "version",
    "artifact",
]


@dataclass(frozen=True)
class DataTags:
    """The facts about an estimator that decide what data it can be fitted on.

    A version-neutral view of scikit-learn's tags (dataclasses since 1.6, a dict before).
    """

    estimator_type: str | None = None  # classifier, regressor, clusterer, outlier_detector, ...
    two_d_array: bool = True
    one_d_array: bool = False
    three_d_array: bool = False
    string: bool = False
    dict: bool = False
    categorical: bool = False
    positive_X: bool = False
    pairwise: bool = False
    one_d_labels: bool = False
    two_d_labels: bool = False
    requires_y: bool = False
    positive_y: bool = False
    multi_output: bool = False
    multi_output_only: bool = False
    binary_only: bool = False
    requires_fit: bool = True


def data_tags(estimator: Any) -> DataTags:
    """Read the data-relevant tags of ``estimator`` under any scikit-learn from 1.0 on."""
    if _get_tags_new is not None:
        tags = _get_tags_new(estimator)
        it, tt = tags.input_tags, tags.target_tags
        return DataTags(
            estimator_type=tags.estimator_type,
            two_d_array=it.two_d_array,
            one_d_array=getattr(it, "one_d_array", False),
            three_d_array=getattr(it, "three_d_array", False),
            string=it.string,
            dict=it.dict,
            categorical=it.categorical,
            positive_X=it.positive_only,
            pairwise=it.pairwise,
            one_d_labels=getattr(tt, "one_d_labels", False),
            two_d_labels=getattr(tt, "two_d_labels", False),
            requires_y=tt.required,
            positive_y=tt.positive_only,
            multi_output=tt.multi_output,
            multi_output_only=tt.multi_output and not tt.single_output,
            binary_only=tags.classifier_tags is not None and not tags.classifier_tags.multi_class,
            requires_fit=tags.requires_fit,
        )
    old = _old_tags(estimator)
    x_types = list(old.get("X_types", ["2darray"]))
    estimator_type = getattr(estimator, "_estimator_type", None)
    if estimator_type == "DensityEstimator":
        estimator_type = "density_estimator"
    return DataTags(
        estimator_type=estimator_type,
        two_d_array="2darray" in x_types,
        one_d_array="1darray" in x_types,
        three_d_array="3darray" in x_types,
        string="string" in x_types,
        dict="dict" in x_types,
        categorical="categorical" in x_types,
        positive_X=bool(old.get("requires_positive_X", False)),
        pairwise=bool(old.get("pairwise", False)),
        one_d_labels="1dlabels" in x_types,
        two_d_labels="2dlabels" in x_types,
        requires_y=bool(old.get("requires_y", False)),
        positive_y=bool(old.get("requires_positive_y", False)),
        multi_output=bool(old.get("multioutput", False) or old.get("multioutput_only", False)),
        multi_output_only=bool(old.get("multioutput_only", False)),
        binary_only=bool(old.get("binary_only", False)),
        requires_fit=bool(old.get("requires_fit", True)),
    )


def _old_tags(estimator: Any) -> dict[str, Any]:
    """The tag dict of scikit-learn 1.0-1.5 (missing keys mean the defaults)."""
    getter = getattr(estimator, "_get_tags", None)
    if getter is None:  # not a BaseEstimator: every tag at its default
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # _pairwise deprecation in 1.0
        return dict(getter())


def _needs_y(estimator: Any, tags: DataTags) -> bool:
    """Whether ``fit`` needs a target, from the tags and where the tags say too little.

    Transformers such as SelectKBest or SelectFromModel report ``required=False`` because
    some configurations are unsupervised, yet their defaults need ``y``. A required target
    wins over ``one_d_labels``: LightGBM's models say both (their ``y`` may be 1-D labels),
    and fit(X, y); only an estimator that takes no 2-D X (LabelEncoder) is fitted on labels.
    """
    if tags.requires_y or tags.estimator_type in ("classifier", "regressor"):
        return True
    if (tags.one_d_labels or tags.two_d_labels) and not tags.two_d_array:  # fit(y): labels are X
        return False
    if _is_cross_decomposition(estimator):  # PLSSVD before 1.7: fit(X, Y=None), Y required
        return True
    try:
        params = list(inspect.signature(estimator.fit).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins or odd callables
        params = []
    # fit(X, y) with no default for y (third-party estimators); not fit(y) (LabelEncoder).
    for param in params[1:]:
        if param.name in ("y", "Y") and param.default is inspect.Parameter.empty:
            return True
    try:
        own = estimator.get_params(deep=False)
    except Exception:  # pragma: no cover - not a scikit-learn estimator
        own = {}
    if own.get("score_func") is not None:  # univariate feature selectors
        return True
    inner = own.get("estimator", own.get("base_estimator"))
    return inner is not None and data_tags(inner).estimator_type in ("classifier", "regressor")


def _is_cross_decomposition(estimator: Any) -> bool:
    return type(estimator).__module__.startswith("sklearn.cross_decomposition")


def _n_targets(estimator: Any, tags: DataTags) -> int:
    """Number of y columns: 1 unless the estimator only supports, or needs, several.

    Cross-decomposition (CCA, PLS*) needs ``n_components <= n_targets`` for CCA,
    PLSCanonical and PLSSVD, so it gets as many targets as components (at least 2).
    """
    if _is_cross_decomposition(estimator):
        n_components = getattr(estimator, "n_components", 2)
        return max(2, n_components if isinstance(n_components, int) else 2)
    return 2 if tags.multi_output_only else 1


def required_width(estimator: Any) -> int | None:
    """The number of columns an unfitted estimator's fixed parameters demand, if any.

    ``n_features_in_`` before fit (SparseCoder derives it from its dictionary), else the
    width of a ``dictionary`` parameter (before scikit-learn gave SparseCoder that property),
    as scikit-learn's own checks build data for SparseCoder.
    """
    try:
        width = getattr(estimator, "n_features_in_", None)
    except Exception:  # a property that raises before fit
        width = None
    if isinstance(width, (int, np.integer)) and not isinstance(width, bool) and width > 0:
        return int(width)
    shape = getattr(getattr(estimator, "dictionary", None), "shape", None)
    if shape is not None and len(shape) == 2 and shape[1] > 0:
        return int(shape[1])
    return None


def make_fit_data(
    estimator: Any, *, n_samples: int = 60, random_state: int = 0
) -> tuple[Any, Any | None]:
    """Return ``(X, y)`` on which ``estimator`` can be fitted and can predict.

    ``y`` is None when ``fit`` needs no target. ``X`` is a numeric array of ``N_FEATURES``
    columns (as many as the estimator's parameters demand, if they do: ``required_width``)
    unless the tags ask for documents (``string``), dicts (``dict``), label lists
    (``1dlabels``/``2dlabels``), images (``3darray``), a 1-D array or integer categories;
    non-negative when ``positive_only``; a square kernel or distance matrix when pairwise.
    Classifiers get 3 classes (2 when binary-only), regressors a standardised target
    (strictly positive when the tags ask), multi-output-only estimators a 2-D target.
    """
    tags = data_tags(estimator)
    rng = np.random.RandomState(random_state)
    needs_y = _needs_y(estimator, tags)
    n_targets = _n_targets(estimator, tags)
    n_classes = 2 if tags.binary_only else 3
    is_regression = tags.estimator_type == "regressor" or (
        n_targets > 1 and tags.estimator_type != "classifier"
    )

    # Inputs that are not a numeric matrix (labels, images, dicts, text, 1-D), in that order.
    if not tags.two_d_array or tags.dict or tags.three_d_array:
        X = _special_X(estimator, tags, n_samples, rng)
        if X is not None:
            y = _target(tags, n_samples, n_targets, n_classes, is_regression, rng)
            if isinstance(X, np.ndarray) and X.ndim == 1 and is_regression and y.ndim == 1:
                y = X + 0.5 * y  # IsotonicRegression: a noisy increasing relation
            return X, (y if needs_y else None)

    if tags.categorical:
        X = rng.randint(0, 4, size=(n_samples, 3))
        y = _target(tags, n_samples, n_targets, n_classes, is_regression, rng)
        return X, (y if needs_y else None)

    n_features = required_width(estimator) or N_FEATURES
    X, y = _numeric_Xy(
        tags, n_samples, n_targets, n_classes, is_regression, needs_y, rng, n_features
    )
    if tags.positive_X or type(estimator).__name__ == "SkewedChi2Sampler":
        # SkewedChi2Sampler needs X > -skewedness, i.e. non-negative for the default 1.0.
        X = X - X.min()
    if getattr(estimator, "metric", None) == "precomputed":
        from sklearn.metrics import pairwise_distances

        X = pairwise_distances(X, metric="euclidean")
    elif tags.pairwise:
        from sklearn.metrics.pairwise import linear_kernel

        X = linear_kernel(X, X)
    return X, (y if needs_y else None)


def _special_X(
    estimator: Any, tags: DataTags, n_samples: int, rng: np.random.RandomState
) -> Any | None:
    """X for estimators that take labels, images, dicts, text or a 1-D array; else None."""
    if tags.one_d_labels:  # LabelEncoder, LabelBinarizer: fit(y)
        return rng.randint(0, 3, size=n_samples)
    if tags.two_d_labels:  # MultiLabelBinarizer: a sequence of label sets
        return [
            tuple(sorted(set(rng.randint(0, 4, size=rng.randint(1, 4))))) for _ in range(n_samples)
        ]
    if tags.three_d_array:  # PatchExtractor: a batch of images
        return rng.uniform(size=(max(2, n_samples // 20), 20, 20))
    if tags.dict:  # DictVectorizer, FeatureHasher(input_type="dict")
        return [
            {word: float(rng.randint(1, 5)) for word in rng.choice(_WORDS, size=3, replace=False)}
            for _ in range(n_samples)
        ]
    if tags.string:
        documents = [" ".join(rng.choice(_WORDS, size=rng.randint(4, 9))) for _ in range(n_samples)]
        if getattr(estimator, "input_type", None) == "string":  # FeatureHasher: token lists
            return [doc.split() for doc in documents]
        return documents
    if tags.one_d_array:  # IsotonicRegression
        return rng.uniform(-3, 3, size=n_samples)
    return None


def _target(
    tags: DataTags,
    n_samples: int,
    n_targets: int,
    n_classes: int,
    is_regression: bool,
    rng: np.random.RandomState,
) -> np.ndarray:
    """A target unrelated to X, for inputs that are not numeric matrices."""
    if is_regression:
        y = rng.normal(size=(n_samples, n_targets))
        y = y - y.min() + 1.0 if tags.positive_y else y
    elif n_targets > 1:
        y = rng.randint(0, 2, size=(n_samples, n_targets))
    else:
        y = np.arange(n_samples) % n_classes
        rng.shuffle(y)
        return y
    return y if n_targets > 1 else y[:, 0]


def _numeric_Xy(
    tags: DataTags,
    n_samples: int,
    n_targets: int,
    n_classes: int,
    is_regression: bool,
    needs_y: bool,
    rng: np.random.RandomState,
    n_features: int = N_FEATURES,
) -> tuple[np.ndarray, np.ndarray]:
    """A numeric X of ``n_features`` columns with a target that depends on it."""
    from sklearn.datasets import make_blobs, make_regression

    seed = rng.randint(np.iinfo(np.int32).max)
    if is_regression:
        X, y = make_regression(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=min(3, n_features),
            n_targets=n_targets,
            noise=1.0,
            random_state=seed,
        )
        y = (y - y.mean(axis=0)) / y.std(axis=0)
        if tags.positive_y:
            y = y - y.min() + 1.0
        return X, y
    # Overlapping isotropic blobs: full-rank class covariances (QuadraticDiscriminantAnalysis)
    # and probabilities away from 0 and 1, so comparisons after loading mean something.
    X, y = make_blobs(
        n_samples=n_samples,
        n_features=n_features,
        centers=n_classes if needs_y else 3,
        center_box=(-3.0, 3.0),
        random_state=seed,
    )
    if needs_y and n_targets > 1:  # multi-output classification: binary columns (multilabel)
        extra = [(X[:, j] > np.median(X[:, j])).astype(int) for j in range(n_targets - 1)]
        y = np.column_stack([(y == y.max()).astype(int), *extra])
    return X, y


def make_categorical_data(
    estimator: Any, *, n_samples: int = 60, random_state: int = 0
) -> tuple[Any, Any | None]:
    """A pandas frame of categorical columns (strings, a pandas ``category`` and a numeric
    column beside them) with a target that depends on the categories, for estimators that
    encode categories and leave numeric columns alone (category_encoders' encoders pick
    their columns by dtype). ``y`` is None when ``fit`` needs no target. Needs pandas.
    """
    import pandas as pd

    tags = data_tags(estimator)
    rng = np.random.RandomState(random_state)
    colour = rng.choice(["red", "green", "blue", "grey"], size=n_samples)
    size = rng.choice(["S", "M", "L"], size=n_samples)
    X = pd.DataFrame(
        {
            "colour": colour,  # str (StringDtype) under pandas 3, object before
            "size": pd.Categorical(size, categories=["S", "M", "L"]),
            "weight": rng.normal(size=n_samples),
        }
    )
    if not _needs_y(estimator, tags):
        return X, None
    signal = (colour == "red").astype(float) + (size == "L") + 0.5 * rng.normal(size=n_samples)
    if tags.estimator_type == "regressor":
        return X, signal
    n_classes = 2 if tags.binary_only else 3
    y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X, y


# --------------------------------------------------------------------------- instances


def _logreg() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression()


def _ridge() -> Any:
    from sklearn.linear_model import Ridge

    return Ridge()


def _tree(kind: str) -> Any:
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    cls = DecisionTreeClassifier if kind == "classifier" else DecisionTreeRegressor
    return cls(max_depth=3, random_state=0)


def _prefit_logreg() -> Any:
    """A LogisticRegression already fitted on ``make_fit_data`` classifier data."""
    model = _logreg()
    return model.fit(*make_fit_data(model))


def _pipeline_steps() -> list[tuple[str, Any]]:
    from sklearn.preprocessing import StandardScaler

    return [("scale", StandardScaler()), ("logreg", _logreg())]


def _column_transformers() -> list[tuple[str, Any, list[int]]]:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    return [("scale", StandardScaler(), [0, 1]), ("pca", PCA(n_components=2), [2, 3, 4])]


def _union() -> list[tuple[str, Any]]:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    return [("pca", PCA(n_components=2)), ("scale", StandardScaler())]


def _dictionary() -> np.ndarray:
    atoms = np.random.RandomState(0).normal(size=(3, N_FEATURES))
    return atoms / np.linalg.norm(atoms, axis=1, keepdims=True)


# Constructor arguments by class name: positional arguments (the required ones, positional
# because their names changed across versions, e.g. base_estimator -> estimator) and keyword
# arguments (dropped when the installed version's __init__ does not accept them).
_Spec = Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]
_SPECS: dict[str, _Spec] = {
    # Meta-estimators and containers that need contents.
    "ClassifierChain": lambda: ((_logreg(),), {}),
    "ColumnTransformer": lambda: ((_column_transformers(),), {}),
    "FeatureUnion": lambda: ((_union(),), {}),
    "FixedThresholdClassifier": lambda: ((_logreg(),), {}),
    "FrozenEstimator": lambda: ((_prefit_logreg(),), {}),
    "GridSearchCV": lambda: ((_logreg(), {"C": [0.1, 1.0]}), {"cv": 3}),
    # Listed by all_estimators() once sklearn.experimental.enable_halving_search_cv is
    # imported (always on scikit-learn 1.0, which walks sklearn.experimental).
    "HalvingGridSearchCV": lambda: (
        (_logreg(), {"C": [0.1, 1.0, 10.0]}),
        {"cv": 3, "min_resources": "smallest"},
    ),
    "HalvingRandomSearchCV": lambda: (
        (_logreg(), {"C": [0.1, 1.0, 10.0]}),
        {"cv": 3, "min_resources": "smallest"},
    ),
    "MultiOutputClassifier": lambda: ((_logreg(),), {}),
    "MultiOutputRegressor": lambda: ((_ridge(),), {}),
    "OneVsOneClassifier": lambda: ((_logreg(),), {}),
    "OneVsRestClassifier": lambda: ((_logreg(),), {}),
    "OutputCodeClassifier": lambda: ((_logreg(),), {}),
    "Pipeline": lambda: ((_pipeline_steps(),), {}),
    "RandomizedSearchCV": lambda: (
        (_logreg(), {"C": [0.1, 1.0, 10.0]}),
        {"n_iter": 2, "cv": 3},
    ),
    "RegressorChain": lambda: ((_ridge(),), {}),
    "RFE": lambda: ((_logreg(),), {"n_features_to_select": 2}),
    "RFECV": lambda: ((_logreg(),), {"cv": 3}),
    "SelectFromModel": lambda: ((_logreg(),), {}),
    "SelfTrainingClassifier": lambda: ((_logreg(),), {}),
    "SequentialFeatureSelector": lambda: ((_logreg(),), {"n_features_to_select": 2, "cv": 3}),
    "SparseCoder": lambda: ((_dictionary(),), {}),
    "StackingClassifier": lambda: (
        ([("logreg", _logreg()), ("tree", _tree("classifier"))],),
        {"cv": 3},
    ),
    "StackingRegressor": lambda: (
        ([("ridge", _ridge()), ("tree", _tree("regressor"))],),
        {"cv": 3},
    ),
    "VotingClassifier": lambda: (
        ([("logreg", _logreg()), ("tree", _tree("classifier"))],),
        {"voting": "soft"},
    ),
    "VotingRegressor": lambda: (([("ridge", _ridge()), ("tree", _tree("regressor"))],), {}),
    # Defaults that do not fit the small data.
    # auto n_components (Johnson-Lindenstrauss) exceeds N_FEATURES for any n_samples.
    "GaussianRandomProjection": lambda: ((), {"n_components": 2}),
    "SparseRandomProjection": lambda: ((), {"n_components": 2}),
    # k=10 > N_FEATURES only warns, but keeps everything: select for real.
    "SelectKBest": lambda: ((), {"k": 2}),
    # The default solver 'interior-point' (scikit-learn < 1.4) was removed from scipy 1.11.
    "QuantileRegressor": lambda: ((), {"solver": "highs"}),
    # Slow defaults (each took 0.5-3 s on the small data): fewer iterations, same code paths.
    # "a|b": the first name the installed version accepts (max_iter was n_iter before 1.5/1.1).
    "TSNE": lambda: ((), {"max_iter|n_iter": 250}),  # 250 is the smallest allowed; default 1000
    "SpectralBiclustering": lambda: ((), {"n_init": 2}),  # default 10
    "MiniBatchDictionaryLearning": lambda: ((), {"max_iter|n_iter": 20}),  # default 1000
    "DictionaryLearning": lambda: ((), {"max_iter": 20}),  # default 1000, each a LARS per row
    "TunedThresholdClassifierCV": lambda: ((_logreg(),), {"cv": 3, "thresholds": 10}),  # 100
    "TheilSenRegressor": lambda: ((), {"max_subpopulation": 200}),  # default 10_000 lstsq fits
    "LogisticRegressionCV": lambda: ((), {"Cs": 4, "cv": 3}),  # default 10 Cs x 5 folds
    # Ensembles: 10 members instead of 100 (50 for AdaBoost) keep fits fast and artifacts
    # small, so that every backend (skops, ONNX conversion) stays quick in a sweep.
    # HistGradientBoosting's OpenMP threads make its 100 iterations slow on a busy machine.
    "HistGradientBoostingClassifier": lambda: ((), {"max_iter": 10}),
    "HistGradientBoostingRegressor": lambda: ((), {"max_iter": 10}),
    **{
        name: (lambda: ((), {"n_estimators": 10}))
        for name in (
            "AdaBoostClassifier",
            "AdaBoostRegressor",
            "ExtraTreesClassifier",
            "ExtraTreesRegressor",
            "GradientBoostingClassifier",
            "GradientBoostingRegressor",
            "IsolationForest",
            "RandomForestClassifier",
            "RandomForestRegressor",
            "RandomTreesEmbedding",
        )
    },
}


def _build(name: str, cls: type) -> Any:
    """One instance of ``cls`` with the arguments of ``_SPECS`` (or none), seeded."""
    args, kwargs = _SPECS[name]() if name in _SPECS else ((), {})
    accepted = inspect.signature(cls.__init__).parameters
    chosen = {}
    for names, value in kwargs.items():
        name = next((n for n in names.split("|") if n in accepted), None)
        if name is not None:  # parameters the installed version lacks are dropped
            chosen[name] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        estimator = cls(*args, **chosen)
    _seed(estimator)
    return estimator


def _seed(estimator: Any, random_state: int = 0) -> None:
    """Set every unset ``random_state`` (nested ones too) to ``random_state``."""
    params = estimator.get_params(deep=True)
    unset = {
        key: random_state
        for key, value in params.items()
        if (key == "random_state" or key.endswith("__random_state")) and value is None
    }
    if unset:
        estimator.set_params(**unset)


def default_instances(*, type_filter: str | list[str] | None = None) -> list[tuple[str, Any]]:
    """Every estimator ``all_estimators(type_filter=...)`` lists, built with small defaults.

    Returns ``(class name, unfitted instance)`` pairs in ``all_estimators`` order. Anything
    that cannot be built is recorded in ``NOT_BUILT`` (cleared first), never dropped.
    """
    from sklearn.utils import all_estimators

    NOT_BUILT.clear()
    instances = []
    for name, cls in all_estimators(type_filter=type_filter):
        try:
            instances.append((name, _build(name, cls)))
        except Exception as exc:
            NOT_BUILT[name] = f"{type(exc).__name__}: {exc}"
    return instances
