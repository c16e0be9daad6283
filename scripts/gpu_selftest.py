"""GPU self-test worker (run by scripts/gpu_selftest.sh; see there).

    gpu_selftest.py local            fp16/bf16 AMP steps, loss-scaler round trip, NDHWC vs NCDHW
    gpu_selftest.py syncbn OUT_DIR   one sync-BN training run (1 GPU directly, 2 under the launcher)
    gpu_selftest.py compare OUT_DIR  2-GPU sync BN against 1 GPU
Each check prints "PASS name: detail" or "FAIL name: detail"; the exit code is the number of
failures. ``--cpu-smoke`` runs the same code on the CPU (AMP checks report n/a) to check the
script itself; it verifies nothing about GPUs.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import paddle
import paddle.nn.functional as F

from dist_train import dist
from dist_train.training import engine
from dist_train.dist import sync_bn
from dist_train.models import build_model

TINY = {"width_mult": 0.25}
RESULTS = []


def report(name: str, ok: bool | None, detail: str) -> None:
    status = {True: "PASS", False: "FAIL", None: "N/A "}[ok]
    RESULTS.append(ok)
    print(f"{status} {name}: {detail}", flush=True)


def batch(n=8, t=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3, t, size, size)).astype(np.float32)
    x[n // 2:] = x[n // 2:] * 2.0 + 1.0  # halves with different statistics (sync BN matters)
    return x, rng.integers(0, 5, n).astype(np.int64)


def amp_step(dtype: str, level: str, on_gpu: bool) -> None:
    name = f"amp {dtype} {level}"
    if not on_gpu:
        report(name, None, "no GPU")
        return
    paddle.seed(0)
    net = build_model("resnet-10", 5, **TINY)
    opt = paddle.optimizer.Momentum(0.01, parameters=net.parameters(), multi_precision=level == "O2")
    if level == "O2":
        net, opt = paddle.amp.decorate(models=net, optimizers=opt, level="O2", dtype=dtype,
                                       master_weight=True, save_dtype="float32")
    amp = {"enabled": True, "level": level, "dtype": dtype}
    scaler = engine.make_scaler(amp, 1024.0)
    seen = []
    hook = net.conv1.register_forward_post_hook(lambda layer, inp, out: seen.append(str(out.dtype)))
    x, y = batch()
    before = net.fc.weight.numpy().astype(np.float32).copy()
    loss_sum, _ = engine.accumulate_gradients(net, paddle.to_tensor(x), paddle.to_tensor(y), 1, amp,
                                              scaler)
    engine.optimizer_step(opt, scaler, opt._parameter_list, list(net.named_parameters()),
                          clip_norm=1.0, nan_check=True, loss_sum=loss_sum, global_step=0)
    hook.remove()
    changed = float(np.abs(net.fc.weight.numpy().astype(np.float32) - before).max())
    ok = dtype in seen[0] and np.isfinite(float(loss_sum)) and changed > 0
    report(name, ok, f"conv3d output dtype {seen[0]}, loss {float(loss_sum) / 8:.4f}, "
                     f"fc weight moved {changed:.2e}")


def scaler_round_trip(on_gpu: bool) -> None:
    if not on_gpu:
        report("loss scaler state round trip", None, "no GPU (the scaler is disabled on CPU)")
        return
    amp = {"enabled": True, "level": "O1", "dtype": "float16"}
    a = engine.make_scaler(amp, 4096.0)
    a.update()  # counters move
    state = a.state_dict()
    b = engine.make_scaler(amp, 65536.0)
    b.load_state_dict(state)
    same = all(np.allclose(np.asarray(state[k]), np.asarray(b.state_dict()[k])) for k in state)
    report("loss scaler state round trip", same and float(np.asarray(b.state_dict()["scale"]).reshape(-1)[0]) == 4096.0,
           f"keys {sorted(state)}")


def layout_check() -> None:
    paddle.seed(0)
    ncdhw = build_model("resnet-10", 5, data_format="NCDHW", **TINY)
    ndhwc = build_model("resnet-10", 5, data_format="NDHWC", **TINY)
    ndhwc.set_state_dict(ncdhw.state_dict())
    x, _ = batch()
    diffs = []
    for train in (False, True):
        ncdhw.train() if train else ncdhw.eval()
        ndhwc.train() if train else ndhwc.eval()
        a = ncdhw(paddle.to_tensor(x)).numpy()
        b = ndhwc(paddle.to_tensor(x.transpose(0, 2, 3, 4, 1))).numpy()
        diffs.append(float(np.abs(a - b).max()))
    report("NDHWC vs NCDHW", max(diffs) < 1e-3, f"max |difference| eval {diffs[0]:.2e}, train {diffs[1]:.2e}")


def syncbn_run(out_dir: str, on_gpu: bool) -> None:
    """3 SGD steps on a global batch of 8 split over the ranks; saves outputs and weights."""
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    paddle.seed(0)
    net = build_model("resnet-10", 5, **TINY)
    net, kind = sync_bn.convert_sync_batchnorm(net, world, on_gpu)
    model = dist.wrap_model(net)
    opt = paddle.optimizer.SGD(0.1, parameters=[p for p in net.parameters() if not p.stop_gradient])
    x, y = batch()
    share = 8 // world
    xs, ys = paddle.to_tensor(x[rank * share:(rank + 1) * share]), paddle.to_tensor(y[rank * share:(rank + 1) * share])
    record = {}
    for step in range(3):
        logits = model(xs)
        loss = F.cross_entropy(logits, ys)
        loss.backward()
        if step == 0:
            record["outputs"] = np.concatenate(dist.all_gather_array(logits.numpy()))
        opt.step()
        opt.clear_grad()
    for key, value in net.state_dict().items():
        record[key] = value.numpy()
    if rank == 0:
        np.savez(os.path.join(out_dir, f"syncbn_world{world}.npz"), kind=np.array(kind), **record)


def compare(out_dir: str) -> None:
    one = np.load(os.path.join(out_dir, "syncbn_world1.npz"))
    two = np.load(os.path.join(out_dir, "syncbn_world2.npz"))
    keys = [k for k in one.files if k != "kind"]
    worst = max((float(np.abs(one[k] - two[k]).max() / (1 + np.abs(one[k]).max())), k) for k in keys)
    report("sync BN 2 GPUs x 4 == 1 GPU x 8", worst[0] < 1e-4 and str(two["kind"]) != "plain",
           f"{two['kind']} sync BN; worst relative difference {worst[0]:.2e} ({worst[1]}) over "
           f"outputs, running statistics and weights after 3 steps")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("local", "syncbn", "compare"))
    parser.add_argument("out_dir", nargs="?")
    parser.add_argument("--cpu-smoke", action="store_true")
    args = parser.parse_args(argv)
    on_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if not on_gpu and not args.cpu_smoke:
        print("gpu_selftest: no usable GPU (CPU build of Paddle or no device); --cpu-smoke runs the "
              "code paths on the CPU", file=sys.stderr)
        return 2
    if args.mode == "local":
        for dtype, level in (("float16", "O1"), ("bfloat16", "O1"), ("float16", "O2")):
            amp_step(dtype, level, on_gpu)
        scaler_round_trip(on_gpu)
        layout_check()
    elif args.mode == "syncbn":
        syncbn_run(args.out_dir, on_gpu)
    else:
        compare(args.out_dir)
    return sum(1 for ok in RESULTS if ok is False)


if __name__ == "__main__":
    sys.exit(main())
