"""MCU instruction benchmark under QEMU (-icount shift=0, minstret): every
convolution and linear layer of MI-BMInet and EpiDeNet (forward, weight
gradient, input gradient) and the whole training step, on rv32imfc (float32)
and rv32imc (fixed point). Prints the tables; `biotrain-rt mcu-bench` runs
the same from the command line. Instruction counts are deterministic, so one
round is enough (pytest-benchmark's pedantic mode, 1 round).

    python -m pytest benchmarks/test_bench_mcu.py --benchmark-only -s
"""
import pytest

from biotrain_rt import firmware as fw

CONFIGS = [("rv32imfc", "float32"), ("rv32imc", "fixed")]
MODELS = ["mibminet", "epidenet"]


@pytest.mark.skipif(bool(fw.missing_tools("rv32imfc")), reason="cross toolchain or QEMU missing "
                    "(scripts/install_cross.sh)")
@pytest.mark.parametrize("target,dtype", CONFIGS, ids=[f"{t}-{d}" for t, d in CONFIGS])
@pytest.mark.parametrize("model", MODELS)
def test_mcu_instructions(benchmark, model, target, dtype, tmp_path):
    b = benchmark.pedantic(fw.mcu_bench, args=(model, target, dtype), kwargs={"work_dir": tmp_path},
                           rounds=1, iterations=1)
    print()
    print(b.table())
    benchmark.extra_info.update(step_instructions=b.step_instructions,
                                step_flop_per_instr=b.step_flop_per_instr,
                                step_mac_per_instr=b.step_mac_per_instr,
                                projected_samples_per_s=b.projected_samples_per_s())
    assert b.layers and all(l.forward > 0 for l in b.layers)
    assert b.kernel_instructions < b.step_instructions
