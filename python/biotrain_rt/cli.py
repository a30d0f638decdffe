"""The ``biotrain-rt`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional


def _cmd_plan(args) -> int:
    import biotrain_rt as brt
    make = brt.models.ZOO[args.model]
    net = make(norm=args.norm)
    if args.strategy.startswith("lora"):
        if args.lora_rank < 1:
            print(f"biotrain-rt plan: --lora-rank must be a positive integer, got {args.lora_rank}", file=sys.stderr)
            return 2
        net.add_lora([l.name for l in net.layers[1:] if brt.lora.max_rank(l) >= args.lora_rank],
                     rank=args.lora_rank)
    opt = brt.SGD(lr=1e-3, momentum=0.9) if args.optimizer == "sgd" else brt.Adam()
    tr = brt.Trainer(net, optimizer=opt, strategy=args.strategy, batch_size=args.batch_size)
    print(net.summary())
    print(tr.plan.summary())
    if args.plot:
        tr.plan.plot(args.plot, title=f"{net.name} ({args.norm} norm), {args.strategy}, batch {args.batch_size}")
        print(f"wrote {args.plot}")
    return 0


def _cmd_memory_table(args) -> int:
    from .memory_report import format_memory_table, memory_table
    rows = memory_table()
    table = format_memory_table(rows)
    print(table)
    if args.update_readme:
        _replace_section(args.update_readme, "memory-table", table)
        print(f"updated {args.update_readme}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def _replace_section(path: str, marker: str, body: str) -> None:
    """Rewrites the text between <!-- marker --> and <!-- /marker --> in a file."""
    text = open(path).read()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + start + "\n" + body.strip() + "\n" + end + tail)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="biotrain-rt", description="On-device training of small biosignal models.")
    sub = p.add_subparsers(dest="command", required=True)

    from .calibrate import add_calibrate_commands
    add_calibrate_commands(sub)

    sp = sub.add_parser("plan", help="print (and plot) the memory plan of a zoo model's training step")
    sp.add_argument("--model", choices=["mibminet", "epidenet", "eegnet"], default="mibminet")
    sp.add_argument("--norm", choices=["group", "batch"], default="group")
    sp.add_argument("--strategy", default="full", help="full, last, none, lora or lora+last")
    sp.add_argument("--lora-rank", type=int, default=4, help="rank of the adapters of the lora strategies")
    sp.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    sp.add_argument("--batch-size", type=int, default=8)
    sp.add_argument("--plot", default=None, help="write the plan's picture to this PNG")
    sp.set_defaults(func=_cmd_plan)

    sp = sub.add_parser("memory-table", help="the planner's peak bytes for the zoo, as in the README")
    sp.add_argument("--json", default=None)
    sp.add_argument("--update-readme", default=None, metavar="README.md",
                    help="rewrite the table between the memory-table markers of this file")
    sp.set_defaults(func=_cmd_memory_table)

    try:
        from .cli_firmware import add_firmware_commands
    except ImportError:  # pragma: no cover - the firmware tools are part of the package
        add_firmware_commands = None
    if add_firmware_commands is not None:
        add_firmware_commands(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as e:
        print(f"biotrain-rt {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
