"""ONNX in and out, checked against onnxruntime (and PyTorch for torch's own
exports): the runtime's logits within 1e-5 of onnxruntime's, exact weights
and layers through a round trip, and refusals that name the node."""
import io
import math
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import biotrain_rt as brt  # noqa: E402


def run_ort(model, x, name=None):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {name or s.get_inputs()[0].name: x})[0]


def logits(net, x):
    tr = brt.Trainer(net, strategy="none", batch_size=1)
    try:
        return tr.predict_logits(np.asarray(x).reshape(len(x), *net.input_shape))
    finally:
        tr.release()


def rel_err(got, ref):
    """Largest difference relative to the largest reference value."""
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


def structure(net):
    return [(l.kind, l.name, l.inputs, l.opts, l.shape) for l in net.layers]


def perturb(net, rng):
    """Weights away from their initial values (norm affines away from identity)."""
    for l in net.layers[1:]:
        for k, v in l.params.items():
            if k in ("weight", "bias"):
                l.params[k] = (v + rng.normal(0, 0.1, v.shape)).astype(np.float32)
            elif k == "running_mean":
                l.params[k] = rng.normal(0, 0.3, v.shape).astype(np.float32)
            elif k == "running_var":
                l.params[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
    return net


def every_kind_net(seed=0):
    """One network holding every layer kind, with both ONNX ranks (maps and flat features)."""
    net = brt.Network((2, 6, 12), name="every_kind", seed=seed)
    x = net.conv2d(0, 8, (3, 3), padding=1, bias=True, name="c1")
    x = net.groupnorm(x, 4, name="gn_groups")
    a = net.gelu(x, approximate="tanh", name="act")
    y = net.conv2d(a, 8, (1, 3), padding=(0, 1), groups=2, name="c2")
    y = net.groupnorm(y, 8, name="gn_instance")
    x = net.add(a, y, name="res")
    x = net.maxpool2d(x, (2, 2), name="mp")
    x = net.elu(x, alpha=0.5, name="elu")
    x = net.avgpool2d(x, (1, 3), stride=(1, 2), padding=(0, 1), name="ap")
    x = net.groupnorm(x, 2, affine=False, name="gn_plain")
    x = net.dropout(x, 0.25, name="drop")
    x = net.batchnorm(x, name="bn_map")
    x = net.linear(x, 20, name="fc1")            # the linear layer flattens its input itself
    x = net.batchnorm(x, momentum=0.2, name="bn_flat")
    x = net.groupnorm(x, 1, name="ln_flat")
    x = net.relu(x, name="relu")
    x = net.gelu(x, name="gelu_exact")
    x = net.global_avgpool(x, name="gap")        # on flat features: ONNX needs them as a map again
    x = net.flatten(x, name="flat")
    return net, net.linear(x, 4, name="out")


def every_token_kind_net(seed=0):
    """One network holding every token-sequence kind: attention with and without RoPE and biases,
    LayerNorm with and without affine, both poolings."""
    net = brt.Network((2, 4, 12), name="every_token_kind", seed=seed)
    x = net.conv2d(0, 8, (1, 3), stride=(1, 3), bias=True, name="patch")      # (8, 4, 4)
    x = net.tokens(x, name="tok")                                            # (1, 16, 8)
    x = net.pos_embed(x, name="pos")
    h = net.layernorm(x, name="ln1")
    h = net.mhsa(h, 2, rope=True, name="attn_rope")
    x = net.add(x, net.drop_path(h, 0.2, name="dp"), name="res1")
    h = net.layernorm(x, elementwise_affine=False, name="ln2")
    h = net.mhsa(h, 4, qkv_bias=False, out_bias=True, name="attn_plain")
    h = net.token_linear(h, 12, name="fc1")
    h = net.gelu(h, name="gelu")
    h = net.token_linear(h, 8, bias=False, name="fc2")
    x = net.add(x, h, name="res2")
    a = net.seq_pool(x, name="seqpool")
    b = net.token_mean(net.softmax(x, name="sm"), name="mean")
    x = net.add(a, b, name="pools")
    return net, net.linear(x, 3, name="head")


def test_every_layer_kind_exports():
    kinds = {l.kind for net in (every_kind_net()[0], every_token_kind_net()[0]) for l in net.layers[1:]}
    assert kinds == set(brt.layers.SPECS)


@pytest.mark.parametrize("opset", [17, 20])
def test_token_models_export_and_match_onnxruntime(opset, rng):
    """Transformers (every token kind, CCT-2, the EMG transformer with RoPE, one trained in the
    runtime) against onnxruntime; from_onnx does not read token sequences yet and says so."""
    trained = brt.models.emg_transformer(seed=3)
    tr = brt.Trainer(trained, optimizer=brt.Adam(lr=1e-3), batch_size=2)
    for _ in range(2):
        tr.step(rng.normal(size=(2, *trained.input_shape)).astype(np.float32), rng.integers(0, 6, 2))
    tr.release()
    worst = 0.0
    for net in (perturb(every_token_kind_net()[0], rng), brt.models.cct2(seed=1), trained):
        model = brt.to_onnx(net, opset=opset)
        ops = {n.op_type for n in model.graph.node}
        assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)
        assert "LayerNormalization" in ops and "Softmax" in ops
        x = rng.normal(size=(3, *net.input_shape)).astype(np.float32)
        ref = run_ort(model, x)
        got = logits(net, x)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        worst = max(worst, rel_err(got, ref))
        names = {i.name for i in model.graph.initializer}
        assert set(net.state_dict()) <= names
        with pytest.raises(ValueError, match=r"node '.*'.*(token sequence|attention).*not read"):
            brt.from_onnx(model)
    print(f"opset {opset}: worst |runtime - onnxruntime| / max|logit| = {worst:.2e}")


def test_layernorm_needs_opset_17():
    net, _ = every_token_kind_net()
    with pytest.raises(ValueError, match=r"layer 'ln1'.*opset 17"):
        brt.to_onnx(net, opset=16)


@pytest.mark.parametrize("opset", [17, 20])
def test_to_onnx_matches_onnxruntime_and_round_trips(opset, tmp_path):
    rng = np.random.default_rng(opset)
    nets = [perturb(every_kind_net()[0], rng), perturb(brt.models.emgnet_logenergy(seed=1), rng),
            perturb(brt.models.eegnet(samples=256), rng)]
    # and a model changed by training steps in the runtime
    trained = brt.models.emgnet(seed=2)
    tr = brt.Trainer(trained, optimizer=brt.Adam(lr=1e-2), batch_size=4)
    for _ in range(3):
        tr.step(rng.normal(size=(4, *trained.input_shape)).astype(np.float32), rng.integers(0, 6, 4))
    tr.release()
    nets.append(trained)
    worst = 0.0
    for net in nets:
        path = tmp_path / f"{net.name}.onnx"
        model = brt.to_onnx(net, path, opset=opset)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        assert model.opset_import[0].version == opset
        ops = {n.op_type for n in model.graph.node}
        if net.name == "every_kind":
            assert ("Gelu" in ops) == (opset >= 20)
            assert ("Tanh" in ops) == ("Erf" in ops) == (opset < 20)
        x = rng.normal(size=(5, *net.input_shape)).astype(np.float32)
        ref = run_ort(model, x)
        got = logits(net, x)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        worst = max(worst, rel_err(got, ref))
        # probabilities when asked for
        prob = run_ort(brt.to_onnx(net, opset=opset, softmax=True), x)
        t = brt.Trainer(net, strategy="none", batch_size=1)
        np.testing.assert_allclose(t.predict(x), prob, rtol=1e-5, atol=1e-6)
        t.release()
        back = brt.from_onnx(path)
        assert structure(back) == structure(net)
        a, b = net.state_dict(), back.state_dict()
        assert list(a) == list(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    print(f"opset {opset}: worst |runtime - onnxruntime| / max|logit| = {worst:.2e}")


class _Res:
    """A torch residual CNN over every ONNX pattern torch writes for the supported layers."""

    @staticmethod
    def make():
        import torch.nn as nn
        import torch

        class Res(nn.Module):
            def __init__(s):
                super().__init__()
                s.c1 = nn.Conv2d(2, 8, (3, 3), padding=1)
                s.g = nn.GroupNorm(4, 8)
                s.a = nn.ELU(0.7)
                s.c2 = nn.Conv2d(8, 8, (3, 3), padding=1, bias=False)
                s.i = nn.InstanceNorm2d(8, affine=True)
                s.mp = nn.MaxPool2d(2)
                s.ap = nn.AvgPool2d((1, 2), padding=(0, 1))
                s.bn = nn.BatchNorm1d(96)
                s.fc = nn.Linear(96, 16)
                s.ln = nn.LayerNorm(16)
                s.ge = nn.GELU(approximate="tanh")
                s.d = nn.Dropout(0.3)
                s.out = nn.Linear(16, 5)

            def forward(s, x):
                y = s.a(s.g(s.c1(x)))
                y = y + s.i(s.c2(y))
                y = s.ap(s.mp(torch.relu(y)))
                y = y.view(y.size(0), -1)
                return s.out(s.d(s.ge(s.ln(s.fc(s.bn(y))))))
        return Res()


def _torch_setup(m):
    import torch
    torch.manual_seed(0)
    m.eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for b in m.buffers():
            if b.dtype == torch.float32:
                b.copy_(torch.rand_like(b) + 0.5)
    return m


def _export(m, x, opset=17, dynamic=False):
    import torch
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), f, dynamo=False, opset_version=opset, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}} if dynamic else None)
    return onnx.load_from_string(f.getvalue())


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_onnx_export_imports(dynamic):
    import torch
    import torch.nn as nn
    torch.set_num_threads(1)

    class C1(nn.Module):   # Conv1d on [N, C, T], GroupNorm, global pool, Squeeze
        def __init__(s):
            super().__init__()
            s.c = nn.Conv1d(4, 6, 5, padding=2)
            s.gn = nn.GroupNorm(2, 6)
            s.p = nn.AdaptiveAvgPool1d(1)
            s.f = nn.Linear(6, 3)

        def forward(s, x):
            return s.f(s.p(torch.relu(s.gn(s.c(x)))).squeeze(-1))

    for m, shape in ((_Res.make(), (2, 8, 10)), (C1(), (4, 32))):
        m = _torch_setup(m)
        x = torch.randn(3, *shape)
        model = _export(m, x, dynamic=dynamic)
        if dynamic:   # the batch is symbolic: torch writes the reshape's shape as arithmetic on Shape(x)
            assert "Shape" in {n.op_type for n in model.graph.node} or isinstance(m, C1)
        net = brt.from_onnx(model)
        got = logits(net, x.numpy())
        with torch.no_grad():
            ref_torch = m(x).numpy()
        ref_ort = run_ort(model, x.numpy())
        np.testing.assert_allclose(got, ref_ort, rtol=1e-5, atol=1e-5 * np.abs(ref_ort).max())
        np.testing.assert_allclose(got, ref_torch, rtol=1e-5, atol=1e-5 * np.abs(ref_torch).max())
        # initializers carry torch's parameter names: the same state_dict
        sd, nsd = m.state_dict(), net.state_dict()
        assert set(nsd) <= set(sd)
        for k, v in nsd.items():
            np.testing.assert_array_equal(v, sd[k].numpy().reshape(v.shape), err_msg=k)
        kinds = [l.kind for l in net.layers[1:]]
        if isinstance(m, C1):
            assert net.input_shape == (4, 1, 32) and kinds == ["conv2d", "groupnorm", "relu", "global_avgpool", "linear"]
        else:
            assert kinds == ["conv2d", "groupnorm", "elu", "conv2d", "groupnorm", "add", "relu", "maxpool2d",
                             "avgpool2d", "flatten", "batchnorm", "linear", "groupnorm", "gelu", "linear"]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("opset", [17, 20])
def test_torch_gelu_imports_as_itself(approximate, opset):
    """torch writes the exact GELU as an Erf pattern (the Gelu op from opset 20) and the tanh one as
    a Tanh pattern: each comes in as the runtime's GELU of the same form."""
    import torch
    import torch.nn as nn
    m = _torch_setup(nn.Sequential(nn.Linear(6, 8), nn.GELU(approximate=approximate), nn.Linear(8, 3)))
    x = torch.randn(4, 6) * 3
    model = _export(m, x, opset=opset)
    net = brt.from_onnx(model)
    assert [l.kind for l in net.layers[1:]] == ["linear", "gelu", "linear"]
    assert net.layers[2].opts["approximate"] == approximate
    ref = run_ort(model, x.numpy())
    with torch.no_grad():
        ref_torch = m(x).numpy()
    got = logits(net, x.numpy())
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(got, ref_torch, rtol=1e-5, atol=1e-5 * np.abs(ref_torch).max())


def _model(nodes, inputs, outputs, inits, opset=17, check=True):
    g = helper.make_graph(nodes, "hand", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    if check:
        onnx.checker.check_model(m)
    return m


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_hand_written_graphs_of_other_exporters(rng):
    """What torch's dynamo exporter and other tools write: GroupNormalization (opset 18's per-group and
    21's per-channel affine), LayerNormalization over a feature map, the Gelu op, MatMul + Add,
    Unsqueeze of a [N, C, T] input into a 2-D conv, Transpose of unit axes."""
    f32 = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    C, T = 3, 16
    w1 = f32(4, 1, C, 3)
    cases = []
    for opset, gscale in ((18, f32(2)), (21, f32(4))):
        gbias = f32(gscale.size)
        nodes = [helper.make_node("Unsqueeze", ["x", "ax1"], ["u"], "unsq"),
                 helper.make_node("Conv", ["u", "w1"], ["c"], "conv", kernel_shape=[C, 3], pads=[0, 1, 0, 1]),
                 helper.make_node("GroupNormalization", ["c", "gs", "gb"], ["g"], "gnorm", num_groups=2,
                                  epsilon=1e-5),
                 (helper.make_node("Gelu", ["g"], ["a"], "gelu", approximate="tanh") if opset >= 20 else
                  helper.make_node("Relu", ["g"], ["a"], "relu")),
                 helper.make_node("LayerNormalization", ["a", "ls", "lb"], ["n"], "lnorm", axis=1, epsilon=1e-5),
                 helper.make_node("Transpose", ["n"], ["t"], "tr", perm=[0, 2, 1, 3]),  # (4, 1, T) -> (1, 4, T)
                 helper.make_node("Reshape", ["t", "flat"], ["r"], "reshape"),
                 helper.make_node("MatMul", ["r", "wm"], ["mm"], "fc"),
                 helper.make_node("Add", ["mm", "bm"], ["y"], "fc_bias")]
        inits = {"ax1": np.array([1], np.int64), "w1": w1, "gs": gscale, "gb": gbias,
                 "ls": np.broadcast_to(f32(4, 1, 1), (4, 1, T)).copy(), "lb": np.broadcast_to(f32(4, 1, 1), (4, 1, T)).copy(),
                 "flat": np.array([0, -1], np.int64), "wm": f32(4 * T, 5), "bm": f32(5)}
        # opset 18's GroupNormalization is deprecated (the checker refuses it) but still written and run
        cases.append(_model(nodes, [_vi("x", ["N", C, T])], [_vi("y", ["N", 5])], inits, opset, check=opset != 18))
    for model in cases:
        net = brt.from_onnx(model)
        assert net.input_shape == (1, C, T)   # the conv's layout, picked through the Unsqueeze
        act = "gelu" if model.opset_import[0].version >= 20 else "relu"
        assert [l.kind for l in net.layers[1:]] == ["conv2d", "groupnorm", act, "groupnorm", "flatten", "linear"]
        x = rng.normal(size=(4, C, T)).astype(np.float32)
        ref = run_ort(model, x)
        np.testing.assert_allclose(logits(net, x.reshape(4, 1, C, T)), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_forward_of_a_training_artifact(rng):
    """An onnxruntime-training style graph: parameters as graph inputs, labels, the loss. The importer
    cuts it at the logits; the values come from weights= (the checkpoint)."""
    w1, b1, w2, b2 = (rng.normal(size=s).astype(np.float32) for s in ((8, 6), (8,), (3, 8), (3,)))
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], "/fc1/Gemm", transB=1),
             helper.make_node("Relu", ["h"], ["r"], "/act/Relu"),
             helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["z"], "/fc2/Gemm", transB=1),
             helper.make_node("SoftmaxCrossEntropyLoss", ["z", "labels"], ["loss"], "loss", reduction="mean")]
    params = {"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2}
    inputs = [_vi("x", ["N", 6])] + [_vi(k, list(v.shape)) for k, v in params.items()] + \
             [helper.make_tensor_value_info("labels", TensorProto.INT64, ["N"])]
    g = helper.make_graph(nodes, "training", inputs, [_vi("loss", [])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    with pytest.raises(ValueError, match=r"'/fc1/Gemm'.*graph input without a value.*checkpoint.*weights="):
        brt.from_onnx(model)
    net = brt.from_onnx(model, weights=params)
    assert [(l.kind, l.name) for l in net.layers[1:]] == [("linear", "fc1"), ("relu", "act"), ("linear", "fc2")]
    x = rng.normal(size=(5, 6)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    loss = s.run(None, {"x": x, "labels": y, **params})[0]
    z = logits(net, x.reshape(5, 6, 1, 1)).astype(np.float64)
    ce = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(5), y])
    np.testing.assert_allclose(ce, loss, rtol=1e-5)


@pytest.mark.parametrize("case,pattern", [
    ("sigmoid", r"node 'sig' \(Sigmoid, opset 17\): not supported; supported: Conv"),
    ("concat", r"node 'cat' \(Concat, opset 17\): Concat of activations has no op in the C core"),
    ("attention", r"node 'qk' \(MatMul, opset 17\): a MatMul of two activations \(attention\)"),
    ("token_ln", r"node 'ln' \(LayerNormalization, opset 17\): .*per position"),
    ("transpose", r"node 'tr' \(Transpose, opset 17\): .*reorders the data"),
    ("pads", r"node 'conv' \(Conv, opset 17\): asymmetric pads"),
    ("opset", r"opset 11; opset 13 and later"),
])
def test_refusals_name_the_node(case, pattern, rng):
    w = rng.normal(size=(2, 2, 1, 3)).astype(np.float32)
    x4 = [_vi("x", ["N", 2, 1, 8])]
    if case == "sigmoid":
        m = _model([helper.make_node("Sigmoid", ["x"], ["y"], "sig")], x4, [_vi("y", ["N", 2, 1, 8])], {})
    elif case == "concat":
        m = _model([helper.make_node("Relu", ["x"], ["a"], "r"), helper.make_node("Concat", ["x", "a"], ["y"], "cat", axis=1)],
                   x4, [_vi("y", ["N", 4, 1, 8])], {})
    elif case == "attention":
        m = _model([helper.make_node("Relu", ["x"], ["k"], "r"), helper.make_node("MatMul", ["x", "k"], ["y"], "qk")],
                   [_vi("x", ["N", 4, 4])], [_vi("y", ["N", 4, 4])], {})
    elif case == "token_ln":
        m = _model([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], "ln", axis=-1)],
                   [_vi("x", ["N", 5, 4])], [_vi("y", ["N", 5, 4])],
                   {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)})
    elif case == "transpose":
        m = _model([helper.make_node("Transpose", ["x"], ["t"], "tr", perm=[0, 3, 2, 1]),
                    helper.make_node("Relu", ["t"], ["y"], "r")], x4, [_vi("y", ["N", 8, 1, 2])], {})
    elif case == "pads":
        m = _model([helper.make_node("Conv", ["x", "w"], ["y"], "conv", kernel_shape=[1, 3], pads=[0, 1, 0, 0])],
                   x4, [_vi("y", ["N", 2, 1, 7])], {"w": w})
    else:
        m = _model([helper.make_node("Relu", ["x"], ["y"], "r")], x4, [_vi("y", ["N", 2, 1, 8])], {}, opset=11)
    with pytest.raises(ValueError, match=pattern):
        brt.from_onnx(m)
