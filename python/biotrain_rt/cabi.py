"""The plain-C face of the core, through cffi.

``libbiotrain.so`` is the C core as a shared library (CMake target
``biotrain``); its interface is the public headers alone (``csrc/include``,
starting from ``biotrain/exec.h``). :func:`load` runs the C preprocessor over
them (C99, the system headers stubbed, so what reaches cffi is the project's
own declarations), hands the result to cffi's parser as plain C, and builds an
API-mode module against the library (compiled once into a cache directory,
keyed by the headers and the library). Nothing here goes through the C++
bindings: this module imports nothing else of the package, so it can drive
the core where there is no C++ toolchain.

:class:`Session` drives a whole training run with the C calls a firmware
main makes (bt_graph_init, bt_graph_add_node with options set by the op
table's offsets, bt_plan_build, bt_session_init, bt_session_param,
bt_train_step, bt_forward, checksums, the state blob), from the
(kind, inputs, C options, name) rows that ``Network.core_graph`` and the
firmware manifest use.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

PUBLIC_HEADER = "biotrain/exec.h"
_STUBBED = ("stddef.h", "stdint.h")   # cffi knows size_t, int8_t ... itself
_HERE = Path(__file__).resolve().parent


def include_dir() -> Path:
    """The public headers: the checkout's csrc/include, or the copy an installed package carries."""
    for c in (Path(os.environ["BIOTRAIN_SOURCE_DIR"]) / "csrc" / "include" if os.environ.get("BIOTRAIN_SOURCE_DIR")
              else None, _HERE.parents[1] / "csrc" / "include", _HERE / "_src" / "csrc" / "include"):
        if c is not None and (c / PUBLIC_HEADER).is_file():
            return c
    raise FileNotFoundError("the public headers (csrc/include/biotrain/exec.h) were not found; set "
                            "BIOTRAIN_SOURCE_DIR to the biotrain-rt source tree")


def library_path() -> Path:
    """libbiotrain.so: next to the package (dev_build.sh and the installed wheel put it there)."""
    env = os.environ.get("BIOTRAIN_LIBRARY")
    p = Path(env) if env else _HERE / "libbiotrain.so"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: build it with scripts/dev_build.sh (CMake target 'biotrain') "
                                "or set BIOTRAIN_LIBRARY")
    return p


def _cc() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("biotrain_rt.cabi needs a C compiler (cc) to preprocess the headers and build the module")
    return cc


def declarations(inc: Optional[Path] = None) -> str:
    """The public headers as cffi reads them: preprocessed as C99 (no C++ guard, no macros left), with
    the integer constants of the headers as ``#define NAME ...``."""
    inc = Path(inc or include_dir())
    with tempfile.TemporaryDirectory() as stub:
        for h in _STUBBED:
            Path(stub, h).write_text("")
        out = subprocess.run([_cc(), "-E", "-P", "-std=c99", "-nostdinc", "-I", stub, "-I", str(inc),
                              str(inc / PUBLIC_HEADER)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"preprocessing {PUBLIC_HEADER} failed:\n{out.stderr}")
    consts = []
    for h in sorted((inc / "biotrain").glob("*.h")):
        for m in re.finditer(r"^#define (BT_[A-Z0-9_]+)\s+(\(?-?\d+[uU]?\)?|\(1u << \d+\))\s*(/\*.*)?$",
                             h.read_text(), re.M):
            consts.append(m.group(1))
    used = sorted({c for c in consts if re.search(rf"\b{c}\b", "".join(
        (inc / "biotrain" / n).read_text() for n in _public_headers(inc)))})
    return out.stdout + "\n" + "\n".join(f"#define {c} ..." for c in used) + "\n"


def _public_headers(inc: Path) -> List[str]:
    """The headers exec.h pulls in (its closure), by name."""
    seen, todo = [], [PUBLIC_HEADER.split("/")[1]]
    while todo:
        h = todo.pop()
        if h in seen:
            continue
        seen.append(h)
        todo += re.findall(r'#include "biotrain/([a-z_0-9]+\.h)"', (inc / "biotrain" / h).read_text())
    return seen


class CAPI:
    """The loaded module: ``ffi`` (cffi's FFI) and ``lib`` (the core's functions and constants)."""

    def __init__(self, ffi, lib, path: Path, headers: List[str]):
        self.ffi, self.lib, self.module_path, self.headers = ffi, lib, path, headers

    def status(self, st: int, what: str) -> None:
        if st != 0:
            raise ValueError(f"{what}: {self.ffi.string(self.lib.bt_status_str(st)).decode()} (status {st})")


_LOADED: Dict[str, CAPI] = {}


def load(cache_dir: Optional[str] = None, verbose: bool = False) -> CAPI:
    """Builds (once) and loads the cffi module over libbiotrain.so."""
    from cffi import FFI
    inc, lib = include_dir(), library_path()
    decl = declarations(inc)
    key = hashlib.sha256((decl + str(lib) + str(lib.stat().st_mtime_ns) + sys.version).encode()).hexdigest()[:16]
    if key in _LOADED:
        return _LOADED[key]
    name = f"_biotrain_cabi_{key}"
    root = Path(cache_dir or os.environ.get("BIOTRAIN_CABI_CACHE") or
                Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "biotrain_rt" / "cabi")
    target = root / key
    so = list(target.glob(f"{name}*.so")) if target.is_dir() else []
    if not so:
        ffi = FFI()
        ffi.cdef(decl)
        ffi.set_source(name, f'#include "{PUBLIC_HEADER}"\n', include_dirs=[str(inc)], library_dirs=[str(lib.parent)],
                       runtime_library_dirs=[str(lib.parent)], extra_link_args=[str(lib)],
                       extra_compile_args=["-std=c99"])
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}."))
        try:
            ffi.compile(tmpdir=str(tmp), verbose=verbose)
            try:
                os.replace(tmp, target)       # atomic: another process may have won the race
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists() and tmp != target:
                shutil.rmtree(tmp, ignore_errors=True)
        so = list(target.glob(f"{name}*.so"))
    spec = importlib.util.spec_from_file_location(name, so[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    api = CAPI(mod.ffi, mod.lib, so[0], _public_headers(inc))
    _LOADED[key] = api
    return api


# ==================================================================== a session
class Session:
    """A training session driven through the C API alone.

    ``layers`` are (kind, inputs, C options, name) rows after the input (what
    ``[(l.kind, l.inputs, l.core_opts(), l.name) for l in net.layers[1:]]``
    gives); ``trainable`` the node ids that train. ``dtype`` "float32" (the
    plain-C face of the float executor; fixed point needs the input
    quantisation and calibration policy of ``biotrain_rt.train``)."""

    def __init__(self, input_shape: Sequence[int], layers, trainable: Sequence[int] = (), micro_batch: int = 1,
                 optimizer: str = "sgd", lr: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, seed: int = 0, reuse: bool = True,
                 api: Optional[CAPI] = None):
        self.api = api or load()
        ffi, lib = self.api.ffi, self.api.lib
        self.g = ffi.new("bt_graph *")
        c, h, w = (int(v) for v in input_shape)
        self.input_shape = (c, h, w)
        self.api.status(lib.bt_graph_init(self.g, c, h, w), "bt_graph_init")
        for i, (kind, inputs, opts, name) in enumerate(layers, start=1):
            self._add(kind, inputs, opts, name, i)
        self.api.status(lib.bt_graph_finish(self.g), "bt_graph_finish")
        for i in trainable:
            self.api.status(lib.bt_graph_set_trainable(self.g, int(i), 1), f"bt_graph_set_trainable({i})")
        self.plan = ffi.new("bt_plan *")
        kind = {"sgd": lib.BT_OPTIM_SGD, "adam": lib.BT_OPTIM_ADAM}[optimizer]
        popts = ffi.new("bt_plan_opts *", {"micro_batch": int(micro_batch), "optimizer": kind,
                                           "momentum": int(optimizer == "sgd" and momentum > 0),
                                           "reuse": int(reuse), "dtype": lib.BT_DTYPE_F32})
        self.api.status(lib.bt_plan_build(self.plan, self.g, popts), "bt_plan_build")
        align = int(lib.BT_ARENA_ALIGN)
        self._storage = ffi.new("uint8_t[]", int(self.plan.peak_bytes) + align)
        addr = int(ffi.cast("uintptr_t", self._storage))
        self.arena = ffi.cast("uint8_t *", self._storage) + ((-addr) % align)
        cfg = ffi.new("bt_optim_cfg *", {"kind": kind, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                         "beta1": betas[0], "beta2": betas[1], "eps": eps})
        self.s = ffi.new("bt_session *")
        self.api.status(lib.bt_session_init(self.s, self.g, self.plan, self.arena, int(self.plan.peak_bytes), cfg,
                                            int(seed)), "bt_session_init")
        self.classes = int(self.g.classes)
        #: every C function this session called, for the record
        self.calls = {"bt_graph_init", "bt_op_find", "bt_op_get", "bt_graph_add_node", "bt_graph_finish",
                      "bt_plan_build", "bt_session_init"} | ({"bt_graph_set_trainable"} if trainable else set())

    def _add(self, kind: str, inputs, opts: Dict, name: str, expect: int) -> None:
        ffi, lib = self.api.ffi, self.api.lib
        k = ffi.new("bt_op_kind *")
        self.api.status(lib.bt_op_find(k, kind.encode()), f"bt_op_find('{kind}')")
        desc = lib.bt_op_get(k[0])
        o = ffi.new("bt_node_opts *")
        base = ffi.cast("char *", o)
        fields = {ffi.string(desc.opts[j].name).decode(): desc.opts[j] for j in range(desc.n_opts)}
        for key, v in opts.items():
            if key not in fields:
                raise ValueError(f"layer '{name}' ({kind}): no option '{key}'; the op table has {sorted(fields)}")
            f = fields[key]
            ctype = "float *" if f.type == lib.BT_OPT_FLOAT else "int *"
            ffi.cast(ctype, base + f.offset)[0] = float(v) if f.type == lib.BT_OPT_FLOAT else int(v)
        ins = ffi.new("int[]", [int(i) for i in inputs] or [0])
        nid = ffi.new("int *")
        self.api.status(lib.bt_graph_add_node(self.g, nid, k[0], ins, len(inputs), o, str(name)[:31].encode()),
                        f"bt_graph_add_node('{name}', {kind})")
        if nid[0] != expect:
            raise RuntimeError(f"layer '{name}' got node id {nid[0]}, expected {expect}")

    # ------------------------------------------------------------ tensors
    def param(self, node: int, which: int) -> Optional[np.ndarray]:
        """A parameter in the arena as a float32 array that writes through (None if absent)."""
        ffi, lib = self.api.ffi, self.api.lib
        n = ffi.new("size_t *")
        p = lib.bt_session_param(self.s, node, which, n)
        self.calls.add("bt_session_param")
        if p == ffi.NULL:
            return None
        return np.frombuffer(ffi.buffer(ffi.cast("float *", p), n[0] * 4), dtype=np.float32)

    def grad(self, node: int, which: int) -> Optional[np.ndarray]:
        ffi, lib = self.api.ffi, self.api.lib
        n = ffi.new("size_t *")
        p = lib.bt_session_grad(self.s, node, which, n)
        self.calls.add("bt_session_grad")
        if p == ffi.NULL:
            return None
        return np.frombuffer(ffi.buffer(ffi.cast("float *", p), n[0] * 4), dtype=np.float32).copy()

    def _x(self, x) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"x has shape {x.shape}, the graph takes (batch, {', '.join(map(str, self.input_shape))})")
        return x

    # ------------------------------------------------------------ steps
    def _step(self, fn: str, x, y) -> float:
        ffi, lib = self.api.ffi, self.api.lib
        x = self._x(x)
        y = np.ascontiguousarray(y, dtype=np.int32)
        loss = ffi.new("bt_value *")
        st = getattr(lib, fn)(self.s, loss, ffi.from_buffer("float[]", x), 0, ffi.from_buffer("int32_t[]", y),
                              int(x.shape[0]))
        self.calls.add(fn)
        self.api.status(st, fn)
        return float(loss.f32)

    def train_step(self, x, y) -> float:
        return self._step("bt_train_step", x, y)

    def grad_step(self, x, y) -> float:
        return self._step("bt_grad_step", x, y)

    def apply_update(self) -> None:
        self.api.status(self.api.lib.bt_apply_update(self.s), "bt_apply_update")
        self.calls.add("bt_apply_update")

    def set_lr(self, lr: float) -> None:
        self.api.status(self.api.lib.bt_session_set_lr(self.s, float(lr)), "bt_session_set_lr")
        self.calls.add("bt_session_set_lr")

    def forward(self, x) -> np.ndarray:
        ffi, lib = self.api.ffi, self.api.lib
        x = self._x(x)
        out = np.empty((x.shape[0], self.classes), np.float32)
        st = lib.bt_forward(self.s, ffi.from_buffer("float[]", out), ffi.NULL, ffi.from_buffer("float[]", x), 0,
                            int(x.shape[0]))
        self.calls.add("bt_forward")
        self.api.status(st, "bt_forward")
        return out

    def checksum(self) -> int:
        self.calls.add("bt_session_checksum")
        return int(self.api.lib.bt_session_checksum(self.s))

    def state_checksum(self) -> int:
        self.calls.add("bt_session_state_checksum")
        return int(self.api.lib.bt_session_state_checksum(self.s))

    def n_trainable(self) -> int:
        self.calls.add("bt_session_n_trainable")
        return int(self.api.lib.bt_session_n_trainable(self.s))

    def save_state(self) -> bytes:
        ffi, lib = self.api.ffi, self.api.lib
        n = int(lib.bt_session_state_bytes(self.s))
        buf = ffi.new("uint8_t[]", n)
        ln = ffi.new("size_t *")
        self.api.status(lib.bt_session_save_state(self.s, buf, n, ln), "bt_session_save_state")
        self.calls |= {"bt_session_state_bytes", "bt_session_save_state"}
        return bytes(ffi.buffer(buf, ln[0]))

    def load_state(self, blob: bytes) -> None:
        ffi, lib = self.api.ffi, self.api.lib
        self.api.status(lib.bt_session_load_state(self.s, ffi.from_buffer("uint8_t[]", blob), len(blob)),
                        "bt_session_load_state")
        self.calls.add("bt_session_load_state")

    @property
    def peak_bytes(self) -> int:
        return int(self.plan.peak_bytes)
