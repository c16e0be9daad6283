"""``python -m dist_train.dist.cpu_launch [launcher arguments] SCRIPT ...``: Paddle's launcher
(``paddle.distributed.launch``, same arguments) with the node's device fixed to the CPU.

Paddle's launcher cannot be told to use the CPU on a GPU build of Paddle
(``launch/context/device.py``, ``Device.parse_device``, 2.6.2 and 3.3.1): any set
``CUDA_VISIBLE_DEVICES``, even an empty one, selects GPUs (labels of that list), and an unset one
makes a GPU build count every GPU of the machine; only a count of 0 gives a CPU node. Here
``parse_device`` returns a CPU device instead, so the launcher starts its processes with no
selected GPU and the gloo backend, as on a CPU build. launch.sh starts this with
``CUDA_VISIBLE_DEVICES=`` (Paddle then counts no GPU in the trainers) and ``DIST_TRAIN_DEVICE=cpu``
(``dist.init`` sets the CPU device).
"""
from __future__ import annotations


def use_cpu_device() -> None:
    """Make the launcher's device detection report this node's CPU."""
    from paddle.distributed.launch.context import device

    def parse_device(cls):
        return device.Device(dtype=device.DeviceType.CPU)

    device.Device.parse_device = classmethod(parse_device)


def main() -> None:
    use_cpu_device()
    from paddle.distributed.launch.main import launch

    launch()


if __name__ == "__main__":
    main()
