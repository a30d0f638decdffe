"""The C test programs (ctests/*.c), built with the core under
AddressSanitizer and UndefinedBehaviorSanitizer and run: no report, exit 0.
The executor is built with BT_PLAN_CHECK, so every arena byte that the plan
says is dead at a step is poisoned while that step runs. Also checks that the
core compiles clean as strict C99 with warnings as errors."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = sorted(glob.glob(os.path.join(ROOT, "csrc", "src", "**", "*.c"), recursive=True))
STRICT = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"]
PROGRAMS = sorted(glob.glob(os.path.join(ROOT, "ctests", "*.c")))
CC = shutil.which("gcc") or shutil.which("cc")


def test_core_is_strict_c99():
    assert CC, "a C compiler is required"
    for src in CORE + [os.path.join(ROOT, "csrc", "port", "host", "port_host.c")]:
        r = subprocess.run([CC, *STRICT, "-O2", "-fsyntax-only", "-I", os.path.join(ROOT, "csrc", "include"), src],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{src}:\n{r.stderr}"


def test_there_are_c_programs():
    names = {os.path.basename(p) for p in PROGRAMS}
    assert "test_plan_exec.c" in names and len(names) >= 3, names


@pytest.mark.parametrize("program", PROGRAMS, ids=[os.path.basename(p) for p in PROGRAMS])
def test_c_program_under_sanitizers(program, tmp_path):
    exe = tmp_path / "prog"
    cmd = [CC, *STRICT, "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
           "-fno-sanitize-recover=all", "-DBT_PLAN_CHECK", "-I", os.path.join(ROOT, "csrc", "include"),
           program, *CORE, os.path.join(ROOT, "csrc", "port", "host", "port_host.c"), "-lm", "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    r = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=300)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
