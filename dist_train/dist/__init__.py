"""All distributed state in one place, with single-process fallbacks.

The only module that touches ``paddle.distributed`` or the launcher's environment variables.
Every function here that communicates is a collective: every rank must call it, in the same order.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import time
from typing import Any

import numpy as np
import paddle
import paddle.distributed as pdist

from dist_train.safeload import restricted_loads

_state = {"initialized": False, "store": None, "barrier_generation": {}}


class BarrierTimeout(RuntimeError):
    """Some ranks did not reach a barrier in time; the message names them and the barrier."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def launched_world_size() -> int:
    """World size the launcher announced (1 when started without a launcher)."""
    return _env_int("PADDLE_TRAINERS_NUM", 1)


DEVICE_ENV = "DIST_TRAIN_DEVICE"  # "cpu": launch.sh --cpu (see dist/cpu_launch.py)


def init() -> None:
    """Join the collective job when the launcher started several ranks; nothing to do for one.
    With DIST_TRAIN_DEVICE=cpu the process runs on the CPU whatever GPUs Paddle sees."""
    if _state["initialized"]:
        return
    if os.environ.get(DEVICE_ENV) == "cpu":
        paddle.set_device("cpu")
    if launched_world_size() > 1:
        from paddle.distributed import fleet

        fleet.init(is_collective=True)
        _state["store"] = _global_store()
    _state["initialized"] = True


def _global_store():
    from paddle.base import core

    return core.create_or_get_global_tcp_store()


def get_rank() -> int:
    return pdist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return pdist.get_world_size() if is_distributed() else 1


def get_local_rank() -> int:
    return _env_int("PADDLE_LOCAL_RANK", _env_int("PADDLE_RANK_IN_NODE", 0)) if is_distributed() else 0


def is_distributed() -> bool:
    return _state["initialized"] and launched_world_size() > 1


def is_main_process() -> bool:
    return get_rank() == 0


def wrap_model(model: paddle.nn.Layer) -> paddle.nn.Layer:
    """Data-parallel wrapper when there are several ranks; the model itself otherwise."""
    if not is_distributed():
        return model
    from paddle.distributed import fleet

    return fleet.distributed_model(model)


def no_sync(model: paddle.nn.Layer, skip_gradient_sync: bool):
    """Context for a micro-step: skips the gradient all-reduce when asked and possible."""
    if skip_gradient_sync and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def _as_array(value: Any) -> tuple[np.ndarray, bool]:
    scalar = np.ndim(value) == 0
    return np.asarray(value, dtype=np.float64).reshape(-1 if not scalar else 1), scalar


def _all_reduce(value: Any, op) -> Any:
    array, scalar = _as_array(value)
    if is_distributed():
        tensor = paddle.to_tensor(array)
        pdist.all_reduce(tensor, op=op)
        array = tensor.numpy()
    return float(array[0]) if scalar else array.reshape(np.shape(value))


def all_reduce_sum(value: Any) -> Any:
    """Sum of a number or array over ranks (float64); numbers come back as float."""
    return _all_reduce(value, pdist.ReduceOp.SUM)


def all_reduce_sum_tensor_(tensor: paddle.Tensor) -> paddle.Tensor:
    """In-place sum of a Paddle tensor over ranks, in its own dtype and without host copies
    (the fallback transport of host_allreduce); the tensor itself for one rank."""
    if is_distributed():
        pdist.all_reduce(tensor, op=pdist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(value: Any) -> Any:
    return all_reduce_sum(value) / get_world_size()


def all_reduce_max(value: Any) -> Any:
    return _all_reduce(value, pdist.ReduceOp.MAX)


def all_gather_object(obj: Any) -> list[Any]:
    """One object per rank, in rank order; objects may differ in size. Objects are numbers,
    strings, None, numpy arrays and containers of them: they are unpickled with safeload's
    restriction, so bytes arriving over the network can carry data, never code."""
    if not is_distributed():
        return [obj]
    payload = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
    sizes = all_gather_array(np.array([payload.size], dtype=np.int64))
    longest = int(max(s[0] for s in sizes))
    padded = np.zeros(longest, dtype=np.uint8)
    padded[: payload.size] = payload
    chunks = all_gather_array(padded)
    return [restricted_loads(chunk[: int(size[0])].tobytes(), f"all_gather_object from rank {r}")
            for r, (chunk, size) in enumerate(zip(chunks, sizes))]


def all_gather_array(array: np.ndarray) -> list[np.ndarray]:
    """Gather same-shape arrays from every rank."""
    if not is_distributed():
        return [array]
    gathered: list[paddle.Tensor] = []
    pdist.all_gather(gathered, paddle.to_tensor(array))
    return [t.numpy() for t in gathered]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s object on every rank."""
    if not is_distributed():
        return obj
    return all_gather_object(obj if get_rank() == src else None)[src]


def barrier(name: str = "barrier", timeout_s: float = 600.0, poll_s: float = 0.05) -> None:
    """Wait until every rank arrives; after ``timeout_s`` raise BarrierTimeout naming the absent ranks.

    Paddle's own barrier cannot time out, so arrival is counted in the launcher's TCP store.
    """
    if not is_distributed():
        return
    generation = _state["barrier_generation"].get(name, 0)
    _state["barrier_generation"][name] = generation + 1
    prefix = f"dist_train/barrier/{name}/{generation}"
    store = _state["store"]
    store.add(f"{prefix}/{get_rank()}", 1)
    deadline = time.monotonic() + timeout_s
    waiting = list(range(get_world_size()))
    while True:
        waiting = [r for r in waiting if store.add(f"{prefix}/{r}", 0) < 1]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise BarrierTimeout(
                f"barrier '{name}': rank(s) {waiting} did not arrive within {timeout_s:g} s "
                f"(rank {get_rank()} waited); check log/workerlog.<rank> of those ranks")
        time.sleep(poll_s)
