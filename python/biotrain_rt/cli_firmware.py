"""The firmware commands of the ``biotrain-rt`` command line.

``export-firmware``  writes the C sources and the manifest of N training steps
                     of a zoo model (brt.export.firmware);
``run-firmware``     cross-compiles an export, runs it under QEMU and, with
                     ``--compare-host``, checks every step's checksum against
                     the same steps run on the host.

``mcu-bench``        instructions per MAC and FLOP (MAC) per instruction of every
                     convolution and linear layer's forward, weight gradient and
                     input gradient, and of the whole training step, under QEMU
                     (rv32imfc float32, rv32imc fixed point), with the
                     projected 8-core samples/s.

``--dtype fixed`` exports a fixed-point trainer (the integer executor; models
with BatchNorm need ``--norm group``).
"""
from __future__ import annotations

import json

import numpy as np


def add_firmware_commands(subparsers) -> None:
    """Adds ``export-firmware`` and ``run-firmware`` to an argparse
    subparsers object; each sets ``func`` to a handler returning an exit code."""
    sp = subparsers.add_parser("export-firmware",
                               help="write the C sources of an MCU application training a zoo model")
    sp.add_argument("out_dir", help="directory to write the sources and the manifest into")
    sp.add_argument("--model", default="mibminet", help="zoo model (mibminet, epidenet, ...)")
    sp.add_argument("--data", default=None,
                    help="an .npz with X_train, y_train, X_test, y_test (default: random samples, for a test run)")
    sp.add_argument("--n-train", type=int, default=4, help="random training samples when no --data")
    sp.add_argument("--n-test", type=int, default=4, help="random test samples when no --data")
    sp.add_argument("--steps", type=int, default=10)
    sp.add_argument("--batch-size", type=int, default=1)
    sp.add_argument("--micro-batch", type=int, default=None)
    sp.add_argument("--strategy", default="full", help="full, last or a comma-separated list of layer names")
    sp.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    sp.add_argument("--lr", type=float, default=1e-2)
    sp.add_argument("--momentum", type=float, default=0.9)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--target", default="rv32imfc", help="rv32imfc, rv32imc or gap9")
    sp.add_argument("--dtype", choices=["float32", "fixed"], default="float32",
                    help="float32, or fixed (integer training; SGD only, no BatchNorm)")
    sp.add_argument("--norm", choices=["group", "batch"], default=None,
                    help="the zoo model's norm layers (default: the model's own)")
    sp.set_defaults(func=cmd_export_firmware)

    sp = subparsers.add_parser("run-firmware", help="build an exported firmware, run it under QEMU, compare")
    sp.add_argument("out_dir", help="a directory written by export-firmware")
    sp.add_argument("--target", default=None, help="rv32imfc or rv32imc (default: the export's)")
    sp.add_argument("--timeout", type=float, default=300, help="seconds before a run counts as hung")
    sp.add_argument("--compare-host", action="store_true",
                    help="run the same steps on the host and require identical checksums")
    sp.add_argument("--json", default=None, help="write the result to this file")
    sp.set_defaults(func=cmd_run_firmware)

    sp = subparsers.add_parser("mcu-bench", help="per-layer instruction benchmark of a zoo model under QEMU")
    sp.add_argument("--model", action="append", default=None,
                    help="zoo model (repeatable; default mibminet and epidenet)")
    sp.add_argument("--config", action="append", default=None,
                    help="target:dtype (repeatable; default rv32imfc:float32 and rv32imc:fixed)")
    sp.add_argument("--work-dir", default=None, help="where to write the exports and builds (default: a temp dir)")
    sp.add_argument("--json", default=None, help="write the figures to this file")
    sp.set_defaults(func=cmd_mcu_bench)


def _samples(args, shape, classes):
    if args.data:
        with np.load(args.data) as z:
            missing = [k for k in ("X_train", "y_train", "X_test", "y_test") if k not in z.files]
            if missing:
                raise ValueError(f"{args.data}: missing arrays {missing}; it needs X_train, y_train, X_test, y_test")
            return z["X_train"], z["y_train"], z["X_test"], z["y_test"]
    rng = np.random.default_rng(args.seed)
    mk = lambda n: (rng.standard_normal((n,) + tuple(shape)).astype(np.float32),  # noqa: E731
                    rng.integers(0, classes, n).astype(np.int32))
    xtr, ytr = mk(args.n_train)
    xte, yte = mk(args.n_test)
    return xtr, ytr, xte, yte


def cmd_export_firmware(args) -> int:
    import biotrain_rt as brt
    from .export import firmware as export_firmware

    zoo = getattr(brt.models, "ZOO", {})
    if args.model not in zoo:
        raise ValueError(f"unknown model '{args.model}': use one of {sorted(zoo)}")
    kw = {} if args.norm is None else {"norm": args.norm}
    net = zoo[args.model](seed=args.seed, **kw)
    opt = brt.SGD(lr=args.lr, momentum=args.momentum) if args.optimizer == "sgd" else brt.Adam(lr=args.lr)
    strategy = args.strategy if args.strategy in ("full", "last") else [s for s in args.strategy.split(",") if s]
    tr = brt.Trainer(net, optimizer=opt, strategy=strategy, batch_size=args.batch_size,
                     micro_batch=args.micro_batch, seed=args.seed, dtype=args.dtype)
    ex = export_firmware(tr, args.out_dir, samples=_samples(args, net.input_shape, net.classes), steps=args.steps,
                         batch_size=args.batch_size, target=args.target)
    print(f"wrote {len(ex.files)} files to {ex.out_dir}: {net.name}, {ex.steps} steps of batch {ex.batch_size}, "
          f"arena {ex.peak_bytes} B, target {ex.target}, dtype {args.dtype}")
    mem = ex.memory
    print(f"memory: RAM need {mem['ram_need_bytes']} B, flash need {mem['flash_need_bytes']} B")
    return 0


def cmd_run_firmware(args) -> int:
    from . import firmware as fw

    res = fw.build_and_run(args.out_dir, target=args.target, timeout=args.timeout)
    for s in res.steps:
        print(f"step {s.step}: loss {s.loss:.6f} (0x{s.loss_bits:08x}) checksum 0x{s.checksum:08x} "
              f"instructions {s.instructions}")
    print(res.summary())
    flops = fw.training_flops(args.out_dir)
    macs = fw.training_macs(args.out_dir)
    ips = res.instructions_per_sample
    if ips:
        print(f"FLOP per training sample {flops['total']:,.0f}, FLOP per instruction {flops['total'] / ips:.3f}; "
              f"MAC per training sample {macs['total']:,.0f}, MAC per instruction {macs['total'] / ips:.4f}")
    out = {"target": res.target, "model": res.model, "dtype": res.dtype, "checksums": res.checksums,
           "loss_bits": res.loss_bits, "instructions_per_sample": ips, "size": res.size,
           "arena_bytes": res.arena_bytes, "accuracy": res.accuracy, "flops_per_sample": flops["total"],
           "macs_per_sample": macs["total"]}
    if res.dtype == "fixed":
        out["states"] = res.states
    status = 0
    if args.compare_host:
        host = fw.host_run(args.out_dir)
        same = (host.checksums == res.checksums and host.loss_bits == res.loss_bits
                and host.states == res.states and host.init_checksum == res.init_checksum
                and host.logits_checksum == res.logits_checksum)
        out["host_checksums"] = host.checksums
        out["identical"] = same
        if same:
            print(f"host: identical checksums and losses on all {len(host.steps)} steps")
        else:
            first = next((i for i, (a, b) in enumerate(zip(host.steps, res.steps))
                          if (a.checksum, a.loss_bits, a.state) != (b.checksum, b.loss_bits, b.state)), None)
            if first is None:
                print(f"host: MISMATCH outside the steps (init checksum host 0x{host.init_checksum:08x}, firmware "
                      f"0x{res.init_checksum or 0:08x}; steps host {len(host.steps)}, firmware {len(res.steps)}; "
                      f"or the test logits)")
            else:
                print(f"host: MISMATCH from step {first}: host checksum 0x{host.steps[first].checksum:08x}, "
                      f"firmware 0x{res.steps[first].checksum:08x}")
            status = 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return status


def cmd_mcu_bench(args) -> int:
    from . import firmware as fw

    out = []
    for model in args.model or ["mibminet", "epidenet"]:
        for cfg in args.config or ["rv32imfc:float32", "rv32imc:fixed"]:
            target, _, dtype = cfg.partition(":")
            b = fw.mcu_bench(model, target, dtype or "float32", work_dir=args.work_dir)
            print(b.table())
            print()
            out.append({"model": model, "target": target, "dtype": b.dtype,
                        "step_instructions": b.step_instructions, "step_flops": b.step_flops,
                        "step_macs": b.step_macs, "projected_samples_per_s": b.projected_samples_per_s(),
                        "layers": [{"name": l.name, "shape": l.shape, "macs": l.macs, "forward": l.forward,
                                    "weight": l.weight, "input": l.input} for l in b.layers]})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0
