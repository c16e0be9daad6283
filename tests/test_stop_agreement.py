"""The per-step agreement (training/preempt.py, issue 19 item 8 with issue 18): one small sum
per step carries stop signals and input failures; across hosts it is ONE gloo all-reduce of a
CPU tensor per step (no NCCL all-reduce, no device synchronisation), on one host none at all
(shared memory)."""
import json

import pytest

from helpers import child_env, launch

STEPS = 6


def run_probe(tmp_path, **env):
    out = tmp_path / "out"
    out.mkdir()
    launch(["tests/agreement_probe.py", str(out), str(STEPS)], str(tmp_path / "log"),
           env=child_env(**env))
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.multiproc
@pytest.mark.parametrize("transport", ["shared_memory", "across_hosts", "across_gpu_hosts"])
def test_one_small_collective_per_step_and_failures_reach_every_rank(tmp_path, transport):
    # DIST_TRAIN_SHM_ALLREDUCE=0 gives the transport of ranks on different hosts; with an NCCL
    # default group (faked: no GPU here) the agreement uses a gloo group of its own.
    env = {} if transport == "shared_memory" else {"DIST_TRAIN_SHM_ALLREDUCE": "0"}
    if transport == "across_gpu_hosts":
        env["PROBE_DEFAULT_BACKEND"] = "NCCL"
    ranks = run_probe(tmp_path, **env)
    for rank in ranks:
        assert rank["own_group"] == (transport == "across_gpu_hosts")
        assert rank["stops"] == [False] * STEPS
        if transport != "shared_memory":
            assert len(rank["collectives"]) == STEPS, rank["collectives"]  # one per step
            assert all(place.lower().startswith("place(cpu") for place in rank["collectives"])
        else:
            assert rank["collectives"] == []  # no gloo/NCCL collective per step at all
        # rank 1's input error stops both ranks at the same agreement, named once (rank 0)
        assert rank["raised"] is not None and rank["raised"]["on_every_rank"]
        assert rank["raised"]["message"].startswith("/data/v_bad/img_00001.jpg: unreadable")
        assert "rank 1 of 2" in rank["raised"]["message"]
