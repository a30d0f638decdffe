"""The plain-C face: the public headers are self-contained C99, cffi parses
them as plain C, and a training run through libbiotrain.so alone has the
pybind11 path's bits (losses, parameters, checksums, logits, state blob)."""
import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("cffi")
import biotrain_rt as brt  # noqa: E402
from biotrain_rt import cabi  # noqa: E402

CFLAGS = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    return cabi.load(cache_dir=str(tmp_path_factory.mktemp("cabi")))


def test_public_headers_are_self_contained_c99(tmp_path):
    """Each header a firmware main includes compiles alone, as strict C99 and without C++."""
    cc = shutil.which("cc")
    inc = cabi.include_dir()
    headers = cabi._public_headers(inc)
    assert {"exec.h", "graph.h", "plan.h", "ops.h", "status.h", "types.h"} <= set(headers)
    for h in headers:
        src = tmp_path / f"only_{h}.c"
        src.write_text(f'#include "biotrain/{h}"\nint main(void) {{ return 0; }}\n')
        r = subprocess.run([cc, *CFLAGS, "-fsyntax-only", "-I", str(inc), str(src)], capture_output=True, text=True)
        assert r.returncode == 0, f"biotrain/{h} alone: {r.stderr}"
    decl = cabi.declarations(inc)
    assert "extern \"C\"" not in decl and "#include" not in decl and "bt_train_step" in decl


def core_rows(net):
    return [(l.kind, l.inputs, l.core_opts(), l.name) for l in net.layers[1:]]


def push(sess, net):
    for i, l in enumerate(net.layers):
        for k, name in enumerate(brt.layers.PARAM_NAMES):
            if name in l.params:
                sess.param(i, k)[...] = l.params[name].reshape(-1)


def dropout_bn_net():
    net = brt.Network((2, 4, 16), name="bn_dropout", seed=5)
    x = net.conv2d(0, 6, (4, 3), padding=(0, 1), bias=True, name="conv")
    x = net.batchnorm(x, name="bn")
    x = net.elu(x, name="elu")
    x = net.dropout(x, 0.3, name="drop")
    x = net.avgpool2d(x, (1, 4), name="pool")
    net.linear(x, 3, name="fc")
    return net.finish()


@pytest.mark.parametrize("case", ["emgnet_logenergy-sgd", "bn_dropout-adam"])
def test_training_through_cffi_has_the_pybind_bits(api, case):
    rng = np.random.default_rng(7)
    if case.startswith("emgnet"):
        net, opt, batch, strategy = brt.models.emgnet_logenergy(seed=2), brt.SGD(lr=0.05, momentum=0.9), 6, "full"
    else:
        net, opt, batch, strategy = dropout_bn_net(), brt.Adam(lr=3e-3), 8, ["conv", "fc"]
    tr = brt.Trainer(net, optimizer=opt, strategy=strategy, batch_size=batch, seed=11)
    cs = cabi.Session(net.input_shape, core_rows(net), trainable=tr.trainable_nodes, micro_batch=tr.micro_batch,
                      optimizer=opt.kind, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay,
                      betas=opt.betas, eps=opt.eps, seed=11, api=api)
    push(cs, net)
    assert cs.peak_bytes == tr.plan.peak_bytes and cs.n_trainable() == tr.n_trainable
    assert cs.checksum() == tr.checksum() and cs.state_checksum() == tr.state_checksum()
    for step in range(4):
        x = rng.normal(size=(batch, *net.input_shape)).astype(np.float32)
        y = rng.integers(0, net.classes, batch)
        if step == 2:   # the split step, both sides
            la = cs.grad_step(x, y)
            cs.apply_update()
            lb = tr.step(x, y)
        else:
            la, lb = cs.train_step(x, y), tr.step(x, y)
        assert np.float32(la) == np.float32(lb), step
        assert cs.checksum() == tr.checksum() and cs.state_checksum() == tr.state_checksum(), step
    sd = net.state_dict()
    for i, l in enumerate(net.layers):
        for k, name in enumerate(brt.layers.PARAM_NAMES):
            if name in l.params:
                np.testing.assert_array_equal(cs.param(i, k), sd[f"{l.name}.{name}"].reshape(-1))
    x = rng.normal(size=(5, *net.input_shape)).astype(np.float32)
    np.testing.assert_array_equal(cs.forward(x), tr.predict_logits(x))
    # the state blob is the same bytes, and loads across the two faces
    blob = cs.save_state()
    assert blob == bytes(tr.session.save_state())
    cs.set_lr(opt.lr)
    # a refused step changes nothing and names the problem
    before = cs.checksum()
    with pytest.raises(ValueError, match="status"):
        cs.train_step(x[:2], np.array([0, net.classes]))
    assert cs.checksum() == before
    cs.train_step(x[:2], np.array([0, 1]))
    cs.load_state(blob)
    assert cs.checksum() == before
    tr.release()
    covered = sorted(cs.calls)
    print(f"{case}: {len(covered)} C API functions through cffi: {', '.join(covered)}")
    assert len(covered) >= 18
