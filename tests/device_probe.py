"""Started by tests/test_cpu_device.py through the launch command launch.sh prints for a CPU run:
each rank records the device set-up it got from the launcher and dist.init, then asserts a CPU
run (the launcher saw a GPU build with 2 GPUs; see the test)."""
import json
import os
import sys

import paddle

from dist_train import dist


def main(out_dir: str) -> None:
    seen = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "FLAGS_selected_gpus": os.environ.get("FLAGS_selected_gpus"),
            "PADDLE_DISTRI_BACKEND": os.environ.get("PADDLE_DISTRI_BACKEND")}
    dist.init()
    seen.update(device=paddle.get_device(), rank=dist.get_rank(), world=dist.get_world_size())
    with open(os.path.join(out_dir, f"rank{seen['rank']}.json"), "w", encoding="utf-8") as f:
        json.dump(seen, f)
    assert seen["device"] == "cpu", seen
    assert seen["PADDLE_DISTRI_BACKEND"] == "gloo" and seen["FLAGS_selected_gpus"] is None, seen


if __name__ == "__main__":
    main(sys.argv[1])
