"""Leave-one-subject-out folds beyond one core: processes on this machine
(--jobs) and a Dask cluster (a LocalCluster of two workers), with the serial
run's results for the same seed and a cache the workers share."""
import os

import numpy as np
import pytest

from biotrain_rt import cli
from biotrain_rt.calibrate import TIMING_FIELDS, CalibrationConfig, StrategyConfig, calibrate


def tiny_cfg(seed=0):
    cfg = CalibrationConfig(sweep=(4,), seed=seed)
    cfg.pretrain = StrategyConfig(lr=3e-3, epochs=2, batch_size=64)
    for s in cfg.adapt.values():
        s.epochs = 3
    return cfg


def model_results(res):
    """Everything but the time measurements."""
    if isinstance(res, dict):
        return {k: model_results(v) for k, v in res.items() if k not in TIMING_FIELDS}
    if isinstance(res, list):
        return [model_results(v) for v in res]
    return res


SUBJECTS = [3, 4, 5]


@pytest.fixture(scope="module")
def serial():
    return calibrate(None, tiny_cfg(), subjects=SUBJECTS, progress=False)


def test_processes_give_the_serial_results(serial, tmp_path):
    par = calibrate(None, tiny_cfg(), subjects=SUBJECTS, progress=False, jobs=2, cache_dir=str(tmp_path))
    assert [r["subject"] for r in par["subjects"]] == SUBJECTS
    assert model_results(par) == model_results(serial)
    # the cache written by the workers: one whole file per fold, no temporary left, read back the same
    files = sorted(os.listdir(tmp_path))
    assert len(files) == len(SUBJECTS) and all(f.endswith(".npz") for f in files)
    again = calibrate(None, tiny_cfg(), subjects=SUBJECTS, progress=False, jobs=2, cache_dir=str(tmp_path))
    assert model_results(again) == model_results(serial)
    # another seed is another result (the comparison can fail)
    other = calibrate(None, tiny_cfg(seed=1), subjects=SUBJECTS[:1], progress=False, jobs=2)
    assert model_results(other["subjects"][0]) != model_results(serial["subjects"][0])


def test_dask_local_cluster_gives_the_serial_results(serial, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        res = calibrate(None, tiny_cfg(), subjects=SUBJECTS, progress=False, client=client, cache_dir=str(tmp_path))
        assert model_results(res) == model_results(serial)
        # both workers ran folds
        assert len(client.scheduler_info()["workers"]) == 2
        # by address, as `--dask ADDRESS` does; the second run reads the shared cache
        res2 = calibrate(None, tiny_cfg(), subjects=SUBJECTS, progress=False, client=cluster.scheduler_address,
                         cache_dir=str(tmp_path))
        assert model_results(res2) == model_results(serial)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".npz")]) == len(SUBJECTS)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_cli_jobs_and_bad_values(tmp_path, capsys):
    args = cli.build_parser().parse_args(["calibrate", "--jobs", "2", "--dask", "tcp://127.0.0.1:1"])
    assert args.jobs == 2 and args.dask == "tcp://127.0.0.1:1"
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="jobs must be a positive integer"):
            calibrate(None, tiny_cfg(), subjects=[3], progress=False, jobs=bad)
    out = tmp_path / "o"
    rc = cli.main(["demo", "--subjects", "3", "4", "--pretrain-epochs", "1", "--strategies", "none,last",
                   "--jobs", "2", "--quiet", "--out", str(out)])
    assert rc == 0 and (out / "results.json").is_file()
