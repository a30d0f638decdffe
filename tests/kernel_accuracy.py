"""Accuracy helpers shared by the kernel tests of groupnorm, batchnorm,
activations, elementwise ops, dropout and losses.

Error measure (scale-aware, stated once for all of them):
    rel_err(got, ref) = max|got - ref| / max|ref|
over the whole output array (an infinity-norm relative error; for an all-zero
reference it is the absolute error). The float32 kernels must stay within
TOL = 1e-5 of the float64 NumPy reference. NaN anywhere in the difference
fails the check. A few ill-conditioned cases whose exact result is a
cancellation to nearly nothing pass an explicit scale (the size of the terms
cancelled) and are recorded under a separate name.

The worst error per kernel output is printed at the end of each test module
(the autouse fixture worst_error_summary, imported by the test modules)."""
import numpy as np
import pytest

TOL = 1e-5
WORST = {}


def rel_err(got, ref, scale=None):
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if ref.size == 0:
        return 0.0
    if scale is None:
        scale = np.max(np.abs(ref))
    scale = float(scale)
    diff = float(np.max(np.abs(got - ref)))
    return diff / scale if scale > 0.0 else diff


def check_close(name, got, ref, tol=TOL, scale=None):
    """scale: where the output cancels to almost nothing by construction, the
    magnitude of the terms it is computed from (the caller says why)."""
    err = rel_err(got, ref, scale)
    if not np.isnan(err):
        WORST[name] = max(WORST.get(name, 0.0), err)
    assert err <= tol, f"{name}: relative error {err:.3g} > {tol:g}"
    return err


@pytest.fixture(scope="module", autouse=True)
def worst_error_summary(request):
    WORST.clear()
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is not None and capman is not None and WORST:
        with capman.global_and_fixture_disabled():
            tr.write_line("")
            tr.write_line(f"{request.module.__name__}: worst max|C - ref| / max|ref| over all cases")
            for k in sorted(WORST):
                tr.write_line(f"  {k:<48s} {WORST[k]:.2e}")
    WORST.clear()


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() w.r.t. every entry of a (perturbed in place)."""
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g
