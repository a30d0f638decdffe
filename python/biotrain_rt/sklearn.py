"""scikit-learn face: an estimator that trains in the C runtime, and a
MOABB-style within-session evaluation on local arrays.

::

    from biotrain_rt.sklearn import Classifier
    clf = Classifier(model="emgnet_logenergy", epochs=30)
    cross_val_score(make_pipeline(clf), X, y, cv=5)

    # calibration of a pretrained model: only the last layer, one epoch per call
    cal = Classifier(model=pretrained_net, strategy="last", lr=1e-2)
    cal.partial_fit(X_new, y_new, classes=np.arange(6))

:class:`Classifier` passes scikit-learn's ``check_estimator`` (tests/test_sklearn.py).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional, Sequence, Union

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import models
from .network import Network
from .optim import SGD, Adam

#: built-in models for feature vectors (2-D X): "linear" (softmax regression) and "mlp"
TABULAR = ("linear", "mlp")


def _tabular(kind: str, n_features: int, n_classes: int, hidden: int, seed: int) -> Network:
    net = Network((n_features, 1, 1), name=kind, seed=seed)
    x = 0
    if kind == "mlp":
        x = net.relu(net.linear(x, hidden, name="hidden"), name="relu")
    net.linear(x, n_classes, name="classifier")
    return net.finish()


class Classifier(ClassifierMixin, BaseEstimator):
    """A biotrain-rt network as a scikit-learn classifier.

    Parameters
    ----------
    model : "linear" or "mlp" (for 2-D X of feature vectors); a zoo name
        (``brt.models.ZOO``, for [n, channels, times] X); a callable
        ``(input_shape, n_classes, seed) -> Network``; or a :class:`Network`
        (e.g. pretrained), copied at ``fit`` so the one given is never changed.
    strategy : which layers train ("full", "last", "none" or layer names).
    optimizer : "adam" or "sgd" (or a ``brt.Adam``/``brt.SGD``, whose lr wins).
    lr, momentum, epochs, batch_size : the training run (``partial_fit``: one epoch per call).
    dtype : "float32" or "fixed" (fixed point trains with SGD).
    hidden : the width of the "mlp" model.
    seed : initial weights and batch order; the same seed gives the same model.
    """

    def __init__(self, model: Union[str, Callable, Network] = "mlp", strategy="full", optimizer="adam",
                 lr: float = 1e-2, momentum: float = 0.9, epochs: int = 30, batch_size: int = 16,
                 dtype: str = "float32", hidden: int = 32, seed: int = 0):
        self.model = model
        self.strategy = strategy
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.epochs = epochs
        self.batch_size = batch_size
        self.dtype = dtype
        self.hidden = hidden
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    # ------------------------------------------------------------ pieces
    def _optimizer(self):
        opt = self.optimizer
        if isinstance(opt, (SGD, Adam)):
            return type(opt)(**{k: getattr(opt, k) for k in opt.__dataclass_fields__}) \
                if hasattr(opt, "__dataclass_fields__") else opt
        if opt == "adam":
            return Adam(lr=self.lr)
        if opt == "sgd":
            return SGD(lr=self.lr, momentum=self.momentum)
        raise ValueError(f"optimizer must be 'adam', 'sgd', brt.Adam(...) or brt.SGD(...), got {opt!r}")

    def _validate(self, X, y=None, reset=True):
        kw = dict(allow_nd=True, dtype=np.float32, ensure_min_samples=1, reset=reset)
        if y is None:
            X = validate_data(self, X, **kw)
        else:
            X, y = validate_data(self, X, y, **kw)
        if X.ndim > 4:
            raise ValueError(f"X has {X.ndim} dimensions; Classifier takes [n, features], [n, channels, times] "
                             "or [n, c, h, w]")
        if not reset and tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(f"X has per-sample shape {tuple(X.shape[1:])}, but Classifier was fitted on "
                             f"{self.input_shape_}")
        return X, y

    def _net_input(self, X):
        """X as the network takes it ([n, F] -> [n, F, 1, 1]; [n, c, t] as the Trainer reads it)."""
        return X.reshape(X.shape[0], X.shape[1], 1, 1) if X.ndim == 2 else X

    def _build(self, X, n_classes: int) -> Network:
        m, shape = self.model, tuple(X.shape[1:])
        if isinstance(m, Network):
            net = m.copy()
        elif isinstance(m, str) and m in TABULAR:
            if X.ndim != 2:
                raise ValueError(f"model '{m}' takes 2-D X [n, features]; got X of shape {X.shape} "
                                 f"(use a zoo model for [n, channels, times])")
            net = _tabular(m, X.shape[1], n_classes, int(self.hidden), int(self.seed))
        elif isinstance(m, str) and m in models.ZOO:
            if X.ndim != 3:
                raise ValueError(f"zoo model '{m}' takes X [n, channels, times]; got X of shape {X.shape}")
            net = models.ZOO[m](channels=shape[0], samples=shape[1], classes=n_classes, seed=int(self.seed))
        elif callable(m):
            net = m(shape, n_classes, int(self.seed))
            if not isinstance(net, Network):
                raise TypeError(f"model callable returned {type(net).__name__}, not a biotrain_rt Network")
        else:
            raise ValueError(f"model must be one of {TABULAR}, a zoo name {sorted(models.ZOO)}, a callable "
                             f"or a Network; got {m!r}")
        if net.classes != n_classes:
            raise ValueError(f"the model outputs {net.classes} classes but y has {n_classes} classes")
        if int(np.prod(net.input_shape)) != int(np.prod(shape)):
            raise ValueError(f"the model takes samples of shape {net.input_shape}, X has {shape}")
        return net

    def _train(self, X, y, epochs: int, seed: int):
        from .train import Trainer
        n = X.shape[0]
        tr = Trainer(self.net_, optimizer=self._optimizer(), strategy=self.strategy,
                     batch_size=max(1, min(int(self.batch_size), n)), seed=seed, dtype=self.dtype)
        try:
            h = tr.fit(self._net_input(X), y, epochs=int(epochs), progress=False)
            return list(h["loss"])
        finally:
            tr.release()

    def _encode(self, y):
        check_classification_targets(y)
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if not np.all(self.classes_[idx] == y):
            bad = np.asarray(y)[self.classes_[idx] != y][:4]
            raise ValueError(f"y has labels {bad.tolist()} not among the classes {self.classes_.tolist()}")
        return idx.astype(np.int64)

    # ------------------------------------------------------------ API
    def fit(self, X, y):
        """Builds the model for X's shape and y's classes and trains it for ``epochs``."""
        X, y = self._validate(X, y, reset=True)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"Classifier needs samples of at least 2 classes; got 1 class ({classes[0]!r})")
        self.classes_ = classes
        self.input_shape_ = tuple(X.shape[1:])
        self.net_ = self._build(X, len(classes))
        self.n_partial_ = 0
        self.history_ = self._train(X, self._encode(y), self.epochs, int(self.seed))
        return self

    def partial_fit(self, X, y, classes: Optional[Sequence] = None):
        """One epoch over (X, y). The first call builds the model (``classes`` gives every class;
        with a Network as ``model`` it may be omitted: its outputs are classes 0..K-1); later calls
        keep training it (the optimizer's state starts anew at each call)."""
        first = not hasattr(self, "net_")
        X, y = self._validate(X, y, reset=first)
        if first:
            if classes is None:
                if not isinstance(self.model, Network):
                    raise ValueError("the first partial_fit needs classes=[every class label]")
                classes = np.arange(self.model.classes)
            classes = np.unique(np.asarray(classes))
            check_classification_targets(classes)
            if len(classes) < 2:
                raise ValueError(f"Classifier needs at least 2 classes; got 1 class ({classes[0]!r})")
            self.classes_ = classes
            self.input_shape_ = tuple(X.shape[1:])
            self.net_ = self._build(X, len(classes))
            self.n_partial_ = 0
            self.history_ = []
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={list(classes)} differ from the first partial_fit's {self.classes_.tolist()}")
        self.history_ = self.history_ + self._train(X, self._encode(y), 1, int(self.seed) + self.n_partial_)
        self.n_partial_ += 1
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        X, _ = self._validate(X, reset=False)
        from .train import Trainer
        tr = Trainer(self.net_, strategy="none", batch_size=1, dtype="float32")
        try:
            return tr.predict(self._net_input(X)).astype(np.float64)
        finally:
            tr.release()

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# ================================================================ MOABB-style evaluation
def within_session_evaluation(pipelines: Dict[str, object], X, y, metadata, dataset: str = "local",
                              n_splits: int = 5, random_state: int = 42, scoring: Optional[str] = None):
    """MOABB's ``WithinSessionEvaluation`` on local arrays.

    For every subject and session of ``metadata`` (a DataFrame or a mapping
    with ``subject`` and ``session`` columns, one row per sample of X), each
    pipeline is scored by stratified ``n_splits``-fold cross-validation within
    that session (shuffled with ``random_state``), with MOABB's default metric
    (ROC AUC for two classes, accuracy otherwise) unless ``scoring`` is given.
    Returns a DataFrame with MOABB's result columns: score, time, samples,
    subject, session, channels, n_sessions, dataset, pipeline."""
    import pandas as pd
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    meta = pd.DataFrame(metadata) if not isinstance(metadata, pd.DataFrame) else metadata
    for col in ("subject", "session"):
        if col not in meta.columns:
            raise ValueError(f"metadata needs a '{col}' column (one row per sample)")
    X, y = np.asarray(X), np.asarray(y)
    if len(meta) != len(X) or len(y) != len(X):
        raise ValueError(f"X has {len(X)} samples, y {len(y)} and metadata {len(meta)} rows")
    rows = []
    for subject in sorted(meta["subject"].unique()):
        sub = meta["subject"].to_numpy() == subject
        sessions = sorted(meta.loc[sub, "session"].unique())
        for session in sessions:
            ix = np.flatnonzero(sub & (meta["session"].to_numpy() == session))
            Xs, ys = X[ix], y[ix]
            metric = scoring or ("roc_auc" if len(np.unique(ys)) == 2 else "accuracy")
            cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
            for name, pipe in pipelines.items():
                t0 = time.perf_counter()
                score = cross_val_score(clone(pipe), Xs, ys, cv=cv, scoring=metric).mean()
                rows.append({"score": float(score), "time": (time.perf_counter() - t0) / n_splits,
                             "samples": int(len(ix)), "subject": subject, "session": session,
                             "channels": int(Xs.shape[1]) if Xs.ndim > 1 else 1, "n_sessions": len(sessions),
                             "dataset": dataset, "pipeline": name})
    return pd.DataFrame(rows)
