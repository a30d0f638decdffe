"""The scikit-learn face: check_estimator, Pipeline and cross_val_score,
calibration of a pretrained model with partial_fit, and a MOABB-style
within-session evaluation on the embedded EMG data."""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import biotrain_rt as brt  # noqa: E402
from biotrain_rt.calibrate import CalibrationConfig, prepare  # noqa: E402
from biotrain_rt.data import load_uci_emg  # noqa: E402
from biotrain_rt.sklearn import Classifier, within_session_evaluation  # noqa: E402

#: checks that cannot apply, and why
NOT_APPLICABLE = {"check_array_api_input": "the runtime takes NumPy arrays (the C core reads host memory); "
                                           "scikit-learn skips it unless SCIPY_ARRAY_API is set"}


def flat(X):
    return X.reshape(len(X), -1)


@pytest.fixture(scope="module")
def emg():
    return prepare(load_uci_emg(), CalibrationConfig())   # log-energy windows [n, 8, 8]


@pytest.mark.parametrize("est", [Classifier(), Classifier(model="linear", strategy="last", optimizer="sgd", lr=0.05)],
                         ids=["mlp-adam", "linear-sgd"])
def test_check_estimator(est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = check_estimator(est, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in res if r["status"] == "failed"]
    skipped = {r["check_name"] for r in res if r["status"] == "skipped"}
    passed = sum(r["status"] == "passed" for r in res)
    assert not failed
    assert skipped <= set(NOT_APPLICABLE)
    assert passed >= 50
    print(f"check_estimator({est!r}): {passed} passed, skipped {sorted(skipped)}")


def test_pipeline_cross_val_and_params(emg):
    s = (emg.subject == 3) & (emg.session == 1)
    X, y = emg.X[s], emg.y[s]
    names = np.asarray(emg.class_names)[y]          # string labels go through classes_
    clf = Classifier(model="emgnet_logenergy", lr=3e-3, epochs=30, batch_size=10)
    scores = cross_val_score(clf, X, names, cv=StratifiedKFold(4, shuffle=True, random_state=0))
    assert scores.mean() > 0.8                       # chance is 1/6
    pipe = make_pipeline(FunctionTransformer(flat), StandardScaler(), Classifier(model="mlp", epochs=20))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.7
    # parameters: get/set, clone gives an unfitted twin with the same parameters
    p = clf.get_params()
    assert p["model"] == "emgnet_logenergy" and p["epochs"] == 30
    c2 = clone(clf).set_params(epochs=5)
    assert c2.epochs == 5 and not hasattr(c2, "net_")
    # same seed, same model; fitted estimators pickle (the C graph is rebuilt)
    a = clf.fit(X, names).predict_proba(X)
    b = clone(clf).fit(X, names).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), a)
    assert set(clf.predict(X)) <= set(emg.class_names)
    assert clf.score(X, names) == np.mean(clf.predict(X) == names)


def test_partial_fit_calibrates_a_pretrained_model(emg):
    train = emg.subject != 1
    pre = Classifier(model="emgnet_logenergy", lr=3e-3, epochs=8, batch_size=32).fit(emg.X[train], emg.y[train])
    net = pre.net_
    before = net.state_dict()
    cal_idx = np.flatnonzero((emg.subject == 1) & (emg.session == 1))[:60]
    cal = Classifier(model=net, strategy="last", lr=1e-2, batch_size=10)
    for _ in range(5):
        cal.partial_fit(emg.X[cal_idx], emg.y[cal_idx])     # classes 0..5 from the network
    assert cal.n_partial_ == 5 and len(cal.history_) == 5 and cal.classes_.tolist() == list(range(6))
    after = cal.net_.state_dict()
    for k, v in before.items():
        np.testing.assert_array_equal(net.state_dict()[k], v)          # the given network is not changed
        if k.startswith("classifier."):
            assert not np.array_equal(after[k], v), k                  # the last layer trained
        else:
            np.testing.assert_array_equal(after[k], v, err_msg=k)      # the rest frozen
    with pytest.raises(ValueError, match="differ from the first partial_fit"):
        cal.partial_fit(emg.X[cal_idx], emg.y[cal_idx], classes=[0, 1])
    with pytest.raises(ValueError, match="first partial_fit needs classes"):
        Classifier().partial_fit(flat(emg.X[:10]), emg.y[:10])


def test_within_session_evaluation_is_moabbs_protocol(emg):
    pipes = {"brt-emgnet": Classifier(model="emgnet_logenergy", lr=3e-3, epochs=20, batch_size=10),
             "LDA": make_pipeline(FunctionTransformer(flat), LinearDiscriminantAnalysis())}
    meta = {"subject": emg.subject, "session": emg.session}
    res = within_session_evaluation(pipes, emg.X, emg.y, meta, dataset="uci_emg_tiny")
    assert list(res.columns) == ["score", "time", "samples", "subject", "session", "channels", "n_sessions",
                                 "dataset", "pipeline"]
    assert len(res) == 4 * 2 * 2 and set(res["n_sessions"]) == {2} and set(res["channels"]) == {8}
    means = res.groupby("pipeline")["score"].mean()
    assert means["brt-emgnet"] > 0.9 and means["LDA"] > 0.85
    # one row by hand: 5 shuffled stratified folds of that session, accuracy (6 classes)
    row = res[(res.subject == 4) & (res.session == 2) & (res.pipeline == "LDA")].iloc[0]
    ix = np.flatnonzero((emg.subject == 4) & (emg.session == 2))
    accs = []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=42).split(emg.X[ix], emg.y[ix]):
        lda = LinearDiscriminantAnalysis().fit(flat(emg.X[ix][tr]), emg.y[ix][tr])
        accs.append(np.mean(lda.predict(flat(emg.X[ix][te])) == emg.y[ix][te]))
    assert row["score"] == pytest.approx(np.mean(accs), abs=1e-12) and row["samples"] == len(ix)
    # two classes: ROC AUC, as MOABB
    two = np.isin(emg.y, [0, 1]) & (emg.subject == 3)
    r2 = within_session_evaluation({"LDA": pipes["LDA"]}, emg.X[two], emg.y[two],
                                   {"subject": emg.subject[two], "session": emg.session[two]})
    ix = np.flatnonzero(two & (emg.session == 1))
    auc = cross_val_score(pipes["LDA"], emg.X[ix], emg.y[ix], scoring="roc_auc",
                          cv=StratifiedKFold(5, shuffle=True, random_state=42)).mean()
    assert r2.iloc[0]["score"] == pytest.approx(auc, abs=1e-12)
