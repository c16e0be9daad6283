"""GPU self-test worker (run by scripts/gpu_selftest.sh; see there for what each check means).

    gpu_selftest.py local OUT      AMP steps, O2 save/resume, loss scaler, NDHWC, predict, data wait
    gpu_selftest.py bn OUT         3 training steps with sync BN, plain BN and captured BN inputs
                                   (1 GPU directly; 2 under the launcher)
    gpu_selftest.py compare OUT    sync BN on 2 GPUs against 1 GPU, variance conventions, control
    gpu_selftest.py na OUT NAME... checks that cannot run here (reason in --reason)
    gpu_selftest.py summary OUT    print every check as ONE JSON object; exit code = failures
Each check prints "PASS/FAIL/N/A name: detail" and appends {"name", "passed", "measured",
"tolerance", "detail"} to OUT/checks.jsonl. ``--cpu-smoke`` runs the same code on the CPU (fp32
where a check needs a GPU dtype) to check the script itself; it verifies nothing about GPUs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np
import paddle
import paddle.nn.functional as F

from dist_train import checkpoint, dist
from dist_train.dist import sync_bn
from dist_train.models import build_model
from dist_train.training import engine

TINY = {"width_mult": 0.25}
EQUAL_TOL = 1e-4      # scaled difference max|a - b| / (1 + max|b|), TF32 off, deterministic cuDNN
RESUME_TOL = 1e-6     # resumed run against the uninterrupted one (same kernels, same inputs)
CONTROL_MIN = 1e-2    # the plain-BN control must differ from 1 GPU by at least this much
MOMENTUM = 0.9        # Paddle's BatchNorm default: running = m * running + (1 - m) * batch
CHECKS_FILE = "checks.jsonl"


def report(out_dir, name, passed, detail, measured=None, tolerance=None):
    status = {True: "PASS", False: "FAIL", None: "N/A "}[passed]
    print(f"{status} {name}: {detail}", flush=True)
    with open(os.path.join(out_dir, CHECKS_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps({"name": name, "passed": passed, "measured": measured,
                            "tolerance": tolerance, "detail": detail}) + "\n")


def checked(out_dir, name, fn, *args):
    """Run one check; an exception is that check's FAIL (with its message), not the script's."""
    try:
        fn(out_dir, name, *args)
    except Exception as e:
        traceback.print_exc()
        report(out_dir, name, False, f"raised {type(e).__name__}: {str(e)[:300]}")


def scaled_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / (1.0 + np.abs(b).max())) if a.size else 0.0


def batch(n=8, t=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3, t, size, size)).astype(np.float32)
    x[n // 2:] = x[n // 2:] * 2.0 + 1.0  # halves with different statistics (sync BN matters)
    return x, rng.integers(0, 5, n).astype(np.int64)


def amp_of(dtype, level, on_gpu):
    """engine's amp settings; float32 (or no GPU): AMP disabled, the same code path."""
    enabled = on_gpu and dtype != "float32"
    return {"enabled": enabled, "level": level, "dtype": dtype if enabled else "float16"}


def training_setup(amp, seed=0):
    """Network, optimizer and scaler as dist_train.training builds them (decorated for O2)."""
    paddle.seed(seed)
    net = build_model("resnet-10", 5, **TINY)
    o2 = amp["enabled"] and amp["level"] == "O2"
    opt = paddle.optimizer.Momentum(0.01, momentum=0.9, parameters=net.parameters(),
                                    multi_precision=o2)
    net, opt = engine.decorate_o2(net, opt, amp)
    return net, opt, engine.make_scaler(amp, 1024.0)


def train_step(net, opt, scaler, amp, x, y, step):
    loss_sum, _ = engine.accumulate_gradients(net, paddle.to_tensor(x), paddle.to_tensor(y), 1, amp,
                                              scaler)
    engine.optimizer_step(opt, scaler, opt._parameter_list, list(net.named_parameters()),
                          clip_norm=0.0, nan_check=True, loss_sum=loss_sum, global_step=step)
    return float(loss_sum)


def float32_state(net, opt):
    """Weights, master weights and velocities as float32, keyed by structured names (Paddle's
    names differ between two builds of the same network)."""
    state = {k: paddle.cast(v, "float32").numpy() for k, v in net.state_dict(use_hook=False).items()}
    velocities = opt._accumulators.get("velocity", {})
    for name, param in net.named_parameters():
        master = opt._master_weights.get(param.name)
        if master is not None:
            state[f"master:{name}"] = master.numpy()
        velocity = velocities.get((master if master is not None else param).name)
        if velocity is not None:
            state[f"velocity:{name}"] = velocity.numpy()
    return state


# ---------------------------------------------------------------- local checks (one process)

def dtype_unsupported(dtype, on_gpu):
    """Why ``dtype`` cannot run here (None when it can): no GPU, or a GPU without it (bfloat16
    needs compute capability 8.0)."""
    if not on_gpu:
        return "needs a GPU (fp16/bf16 kernels)"
    supported = paddle.amp.is_bfloat16_supported() if dtype == "bfloat16" else paddle.amp.is_float16_supported()
    return None if supported else f"this GPU does not support {dtype}"


def amp_step(out_dir, name, dtype, level, on_gpu):
    unsupported = dtype_unsupported(dtype, on_gpu)
    if unsupported:
        return report(out_dir, name, None, unsupported)
    amp = amp_of(dtype, level, on_gpu)
    net, opt, scaler = training_setup(amp)
    seen = []
    hook = net.conv1.register_forward_post_hook(lambda layer, inp, out: seen.append(str(out.dtype)))
    x, y = batch()
    before = paddle.cast(net.fc.weight, "float32").numpy().copy()
    loss = train_step(net, opt, scaler, amp, x, y, 0)
    hook.remove()
    moved = float(np.abs(paddle.cast(net.fc.weight, "float32").numpy() - before).max())
    params = {str(p.dtype) for p in net.parameters()}
    ok = dtype in seen[0] and np.isfinite(loss) and moved > 0
    report(out_dir, name, ok, f"conv3d output {seen[0]}, parameter dtypes {sorted(params)}, "
                              f"loss {loss / 8:.4f}, fc weight moved {moved:.2e}", measured=moved)


def o2_resume(out_dir, name, dtype, on_gpu):
    """2 steps straight against 1 step, checkpoint, a fresh set-up loading it, 1 step."""
    if on_gpu and dtype_unsupported(dtype, on_gpu):
        return report(out_dir, name, None, dtype_unsupported(dtype, on_gpu))
    amp = amp_of(dtype if on_gpu else "float32", "O2", on_gpu)
    batches = [batch(seed=s) for s in (1, 2)]
    net, opt, scaler = training_setup(amp)
    for step, (x, y) in enumerate(batches):
        train_step(net, opt, scaler, amp, x, y, step)
    straight = float32_state(net, opt)
    net, opt, scaler = training_setup(amp)
    train_step(net, opt, scaler, amp, *batches[0], 0)
    with tempfile.TemporaryDirectory() as run_dir:
        path = checkpoint.save_checkpoint(
            run_dir, checkpoint.step_tag(1), model=net, optimizer=opt, scaler=scaler,
            train_state={"epoch": 0, "step_in_epoch": 1, "global_step": 1}, cfg=None, keep_last=0)
        net, opt, scaler = training_setup(amp, seed=5)  # other initial values
        checkpoint.load_checkpoint(path, model=net, optimizer=opt, scaler=scaler)
    train_step(net, opt, scaler, amp, *batches[1], 1)
    resumed = float32_state(net, opt)
    if sorted(resumed) != sorted(straight):
        names = {k.split(":")[0] for k in set(resumed) ^ set(straight)}
        return report(out_dir, name, False, f"state keys differ ({sorted(names)})")
    worst = max((scaled_diff(resumed[k], straight[k]), k) for k in straight)
    masters = sum(1 for k in straight if k.startswith("master:"))
    velocities = sum(1 for k in straight if k.startswith("velocity:"))
    report(out_dir, name, worst[0] <= RESUME_TOL and velocities > 0,
           f"{'O2 ' + dtype if amp['enabled'] else 'fp32 (CPU smoke)'}: save after step 1, resume in a "
           f"fresh set-up, step 2 against 2 straight steps; {masters} master weights, {velocities} "
           f"velocities; worst {worst[0]:.2e} ({worst[1]})", measured=worst[0], tolerance=RESUME_TOL)


def scaler_round_trip(out_dir, name, on_gpu):
    if not on_gpu:
        return report(out_dir, name, None, "the loss scaler is disabled on the CPU")
    amp = amp_of("float16", "O1", on_gpu)
    a = engine.make_scaler(amp, 4096.0)
    a.update()
    state = a.state_dict()
    b = engine.make_scaler(amp, 65536.0)
    b.load_state_dict(state)
    same = all(np.allclose(np.asarray(state[k]), np.asarray(b.state_dict()[k])) for k in state)
    scale = float(np.asarray(b.state_dict()["scale"]).reshape(-1)[0])
    report(out_dir, name, same and scale == 4096.0, f"keys {sorted(state)}, scale {scale}")


def layout_equal(out_dir, name):
    paddle.seed(0)
    ncdhw = build_model("resnet-10", 5, data_format="NCDHW", **TINY)
    ndhwc = build_model("resnet-10", 5, data_format="NDHWC", **TINY)
    ndhwc.set_state_dict(ncdhw.state_dict())
    x, _ = batch()
    diffs = []
    for train in (False, True):
        for net in (ncdhw, ndhwc):
            net.train() if train else net.eval()
        a = ncdhw(paddle.to_tensor(x)).numpy()
        b = ndhwc(paddle.to_tensor(x.transpose(0, 2, 3, 4, 1))).numpy()
        diffs.append(scaled_diff(b, a))
    report(out_dir, name, max(diffs) <= EQUAL_TOL, f"same weights, eval {diffs[0]:.2e}, train "
           f"{diffs[1]:.2e}", measured=max(diffs), tolerance=EQUAL_TOL)


def _synchronize():
    if paddle.device.get_device() != "cpu":
        paddle.device.cuda.synchronize()


def _step_seconds(net, x, y, amp, repeats):
    for i in range(repeats + 1):  # the first is a warm-up (cuDNN algorithm choice)
        if i == 1:
            _synchronize()
            start = time.perf_counter()
        with engine.autocast(amp):
            loss = F.cross_entropy(paddle.cast(net(x), "float32"), y)
        loss.backward()
        net.clear_gradients()
    _synchronize()
    return (time.perf_counter() - start) / repeats


def layout_speed(out_dir, name, on_gpu):
    """Forward + backward of ResNet-18 (GPU: 8 x 16x112x112) in both layouts, fp32 and float16
    (bfloat16 too): NDHWC pays off only where Paddle runs conv3d and BN channels-last."""
    model, size, frames, n, repeats = ("resnet-18", 112, 16, 8, 5) if on_gpu else ("resnet-10", 32, 8, 2, 1)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (n, 3, frames, size, size)).astype(np.float32)
    y = paddle.to_tensor(rng.integers(0, 5, n).astype(np.int64))
    ratios = {}
    if on_gpu:  # BatchNorm runs channels-last only with it (and only in float16)
        paddle.set_flags({"FLAGS_cudnn_batchnorm_spatial_persistent": True})
    for dtype in (("float32", "float16", "bfloat16") if on_gpu else ("float32",)):
        if dtype != "float32" and dtype_unsupported(dtype, on_gpu):
            continue
        amp = amp_of(dtype, "O1", on_gpu)
        seconds = {}
        for layout in ("NCDHW", "NDHWC"):
            paddle.seed(0)
            net = build_model(model, 5, data_format=layout, **({} if on_gpu else TINY))
            data = x if layout == "NCDHW" else x.transpose(0, 2, 3, 4, 1)
            seconds[layout] = _step_seconds(net, paddle.to_tensor(data), y, amp, repeats)
        ratios[dtype] = seconds["NCDHW"] / seconds["NDHWC"]
    if on_gpu:
        paddle.set_flags({"FLAGS_cudnn_batchnorm_spatial_persistent": False})
    report(out_dir, name, True, "NDHWC speed-up over NCDHW (fwd+bwd, >1 = NDHWC faster): "
           + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()), measured=ratios)


def predict_device(out_dir, name, on_gpu):
    """An export predicted on GPU N (the last visible) equals the CPU prediction; on a CPU build
    a GPU request is refused instead of running on the CPU."""
    from dist_train.config import load_config
    from dist_train.deploy.export import export_model
    from dist_train.deploy.predict import InferenceModel

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, ["model.name=resnet-10", "model.width_mult=0.25", "model.num_classes=5",
                                 "data.clip_len=8", "data.crop_size=32", f"run.dir={tmp}/run"])
        paddle.seed(0)
        weights = os.path.join(tmp, "w.pdparams")
        paddle.save(build_model("resnet-10", 5, **TINY).state_dict(), weights)
        out = export_model(cfg, weights, os.path.join(tmp, "export"))
        clips = np.random.default_rng(0).integers(0, 255, (2, 3, 8, 32, 32)).astype(np.uint8)
        on_cpu = InferenceModel(out, "cpu").logits(clips)
        gpus = paddle.device.cuda.device_count() if on_gpu else 0
        device = f"gpu:{max(gpus - 1, 0)}"
        if not on_gpu:
            try:
                InferenceModel(out, device)
            except ValueError as e:
                return report(out_dir, name, True, f"CPU build: {device} refused ({e})")
            return report(out_dir, name, False, f"CPU build: {device} was accepted (silent CPU run)")
        model = InferenceModel(out, device)
        diff = scaled_diff(model.logits(clips), on_cpu)
        ok = model.config.use_gpu() and model.config.gpu_device_id() == gpus - 1 and diff <= 1e-3
        report(out_dir, name, ok, f"{device}: predictor on GPU {model.config.gpu_device_id()}, "
               f"logits against the CPU predictor {diff:.2e}", measured=diff, tolerance=1e-3)


def _packed_store(tmp, videos, frames, height, width, entries):
    """Random JPEG frames packed by data_tools/pack_clips.py (a child process: its pool's
    workers would otherwise re-import this script and Paddle)."""
    import subprocess

    import cv2

    rng = np.random.default_rng(0)
    lines = []
    for v in range(videos):
        folder = os.path.join(tmp, "frames", "Class", f"v{v}")
        os.makedirs(folder)
        for i in range(frames):
            cv2.imwrite(os.path.join(folder, f"img_{i + 1:05d}.jpg"),
                        rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        lines.append(f"Class/v{v} {frames} 0\n")
    with open(os.path.join(tmp, "train.txt"), "w", encoding="utf-8") as f:
        f.writelines(lines[k % videos] for k in range(entries))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, os.path.join(repo, "data_tools", "pack_clips.py"), "--src",
                    os.path.join(tmp, "frames"), "--out", os.path.join(tmp, "store"),
                    "--short-side", str(min(height, width)), "--workers", "1"],
                   check=True, stdout=subprocess.DEVNULL)


def data_wait(out_dir, name, on_gpu):
    """Share of the step spent waiting for the next batch: shared-memory loader + synchronous
    paddle.to_tensor against host batches + DevicePrefetcher (pinned, non-blocking copy)."""
    from dist_train.config import load_config
    from dist_train.data import factory
    from dist_train.data.device_prefetch import DevicePrefetcher, pinned_gpu_copy
    from dist_train.data.loader import make_loader
    from dist_train.data.sampler import GlobalBatchSampler

    if on_gpu:
        model, clip, crop, batch_size, steps, shape = "resnet-18", 16, 112, 16, 30, (128, 171)
    else:
        model, clip, crop, batch_size, steps, shape = "resnet-10", 4, 32, 2, 3, (40, 48)
    with tempfile.TemporaryDirectory() as tmp:
        # one epoch = a first batch (starts the workers, not counted) + ``steps`` measured ones
        _packed_store(tmp, videos=8, frames=clip + 4, height=shape[0], width=shape[1],
                      entries=batch_size * (steps + 1))
        cfg = load_config(None, ["data.source=packed", f"data.root={tmp}/store",
                                 f"data.train_list={tmp}/train.txt", f"data.clip_len={clip}",
                                 f"data.crop_size={crop}", "data.train_crop=random", "data.scales=[1.0]",
                                 f"run.dir={tmp}/run"])
        dataset = factory.build_train_dataset(cfg)
        paddle.seed(0)
        net = build_model(model, 5, **({} if on_gpu else TINY))
        amp = amp_of("float16", "O1", on_gpu)
        copy = pinned_gpu_copy() if on_gpu else (lambda b, slot: (b, lambda: False))
        shares = {}
        for kind in ("to_tensor", "prefetch"):
            sampler = GlobalBatchSampler(len(dataset), batch_size, seed=0)
            loader = make_loader(dataset, sampler, 4 if on_gpu else 1, host_batches=kind == "prefetch")
            batches = DevicePrefetcher(loader, copy) if kind == "prefetch" else loader
            waited = total = 0.0
            try:
                tick = time.perf_counter()
                for step, (clips, labels) in enumerate(batches):
                    fetched = time.perf_counter()
                    with engine.autocast(amp):
                        logits = net(paddle.cast(clips, "float32") / 255.0)
                    F.cross_entropy(paddle.cast(logits, "float32"), labels.reshape([-1])).backward()
                    net.clear_gradients()
                    float(logits.sum())  # the step's end (a device sync, like a log line)
                    now = time.perf_counter()
                    if step:
                        waited, total = waited + fetched - tick, total + now - tick
                    tick = now
            finally:
                loader.close()
            shares[kind] = waited / total
    report(out_dir, name, True, f"{model} {clip}x{crop}x{crop}, batch {batch_size}, packed store: "
           f"data wait {100 * shares['to_tensor']:.1f}% with to_tensor, "
           f"{100 * shares['prefetch']:.1f}% with the pinned prefetching copy", measured=shares)


def run_local(out_dir, on_gpu):
    for dtype, level in (("float16", "O1"), ("bfloat16", "O1"), ("float16", "O2"), ("bfloat16", "O2")):
        checked(out_dir, f"amp {dtype} {level} step", amp_step, dtype, level, on_gpu)
    for dtype in ("float16", "bfloat16"):
        checked(out_dir, f"O2 {dtype} save, resume, step == straight run", o2_resume, dtype, on_gpu)
    checked(out_dir, "loss scaler state round trip", scaler_round_trip, on_gpu)
    checked(out_dir, "NDHWC == NCDHW", layout_equal)
    checked(out_dir, "NDHWC vs NCDHW speed", layout_speed, on_gpu)
    checked(out_dir, "predict --device gpu:N", predict_device, on_gpu)
    checked(out_dir, "data wait: pinned prefetching copy vs to_tensor", data_wait, on_gpu)


# ---------------------------------------------------------------- sync BN (1 and 2 processes)

def _bn_layers(net):
    return [(name, layer) for name, layer in net.named_sublayers()
            if hasattr(layer, "_mean") and hasattr(layer, "_variance")]


def bn_run(out_dir, variant, on_gpu):
    """3 SGD steps on a global batch of 8 split over the ranks. Saves the step-0 outputs, the
    state after 3 steps and, per BN layer and step, the per-channel [count, sum, sum of squares]
    of the layer's input: this rank's (plain BN) or every rank's summed (sync BN)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    paddle.seed(0)
    net = build_model("resnet-10", 5, **TINY)
    if variant == "sync":
        net, kind = sync_bn.convert_sync_batchnorm(net, world, on_gpu)
    else:
        kind = "plain"
    moments = {}

    def capture(name):
        def hook(layer, inputs):
            x = inputs[0].detach().astype("float32").numpy().astype(np.float64)
            axes = tuple(i for i in range(x.ndim) if i != 1)
            moments.setdefault(name, []).append(np.stack([
                np.full(x.shape[1], x.size / x.shape[1]), x.sum(axis=axes), (x * x).sum(axis=axes)]))
        return hook

    hooks = [layer.register_forward_pre_hook(capture(name)) for name, layer in _bn_layers(net)]
    model = dist.wrap_model(net)
    opt = paddle.optimizer.SGD(0.1, parameters=[p for p in net.parameters() if not p.stop_gradient])
    x, y = batch()
    share = 8 // world
    xs = paddle.to_tensor(x[rank * share:(rank + 1) * share])
    ys = paddle.to_tensor(y[rank * share:(rank + 1) * share])
    record = {}
    for step in range(3):
        logits = model(xs)
        F.cross_entropy(logits, ys).backward()
        if step == 0:
            record["outputs"] = np.concatenate(dist.all_gather_array(logits.numpy()))
        opt.step()
        opt.clear_grad()
    for hook in hooks:
        hook.remove()
    everyone = dist.all_gather_object({k: np.stack(v) for k, v in moments.items()})
    for name in moments:
        steps = sum(r[name] for r in everyone) if variant == "sync" else moments[name]
        record[f"moments:{name}"] = np.asarray(steps)
    for key, value in net.state_dict().items():
        record[f"state:{key}"] = value.numpy()
    if rank == 0:
        np.savez(os.path.join(out_dir, f"bn_{variant}_world{world}.npz"), kind=np.array(kind), **record)


def batch_variances(moments):
    """Per step: (mean, biased variance = E[x^2] - mean^2, unbiased = biased * n / (n - 1))."""
    count, total, squares = moments[:, 0], moments[:, 1], moments[:, 2]
    mean = total / count
    biased = squares / count - mean * mean
    return mean, biased, biased * count / (count - 1)


def predicted_running(moments):
    """Running mean and both variance conventions after the captured steps (from 0 and 1)."""
    mean, biased, unbiased = batch_variances(moments)
    run = {"mean": np.zeros(mean.shape[1]), "biased": np.ones(mean.shape[1]),
           "unbiased": np.ones(mean.shape[1])}
    for step in range(mean.shape[0]):
        for key, value in (("mean", mean), ("biased", biased), ("unbiased", unbiased)):
            run[key] = MOMENTUM * run[key] + (1 - MOMENTUM) * value[step]
    return run


def variance_convention(run):
    """Which convention the kernel stored: per BN layer the running variance against both
    predictions. Layers where the two predictions differ by less than 20x the tolerance (many
    values per channel) cannot tell them apart and only count as a match. Returns
    (convention or None, worst difference under it, worst running-mean difference, layers told)."""
    names = [k[len("moments:"):] for k in run.files if k.startswith("moments:")]
    worst = {"biased": 0.0, "unbiased": 0.0}
    mean_worst, telling = 0.0, 0
    for name in names:
        pred = predicted_running(run[f"moments:{name}"])
        stored = run[f"state:{name}._variance"]
        mean_worst = max(mean_worst, scaled_diff(run[f"state:{name}._mean"], pred["mean"]))
        telling += scaled_diff(pred["biased"], pred["unbiased"]) > 20 * EQUAL_TOL
        for key in worst:
            worst[key] = max(worst[key], scaled_diff(stored, pred[key]))
    matches = [key for key in ("biased", "unbiased") if worst[key] <= EQUAL_TOL]
    convention = matches[0] if len(matches) == 1 else None
    return convention, worst[convention] if convention else min(worst.values()), mean_worst, telling


def compare(out_dir):
    one = np.load(os.path.join(out_dir, "bn_sync_world1.npz"))
    two = np.load(os.path.join(out_dir, "bn_sync_world2.npz"))
    plain = np.load(os.path.join(out_dir, "bn_plain_world2.npz"))
    conventions = {}
    for label, run in (("1 GPU", one), ("2 GPUs sync", two), ("2 GPUs plain", plain)):
        convention, worst, mean_worst, telling = variance_convention(run)
        conventions[label] = convention
        report(out_dir, f"BN running statistics from captured inputs: {label}",
               convention is not None and mean_worst <= EQUAL_TOL and telling > 0,
               f"{run['kind']} kernel keeps the {convention or 'NEITHER (biased nor unbiased)'} "
               f"variance ({telling} layers tell them apart); worst variance {worst:.2e}, "
               f"mean {mean_worst:.2e}", measured=max(worst, mean_worst), tolerance=EQUAL_TOL)
    # Same global batch: outputs, weights, running means and the BN inputs' batch statistics
    # agree; running variances too when both kernels keep the same convention.
    same_convention = conventions["1 GPU"] == conventions["2 GPUs sync"]
    keys = [k for k in one.files if k != "kind" and not k.startswith("moments:")
            and (same_convention or not k.endswith("._variance"))]
    diffs = [(scaled_diff(two[k], one[k]), k) for k in keys]
    for k in (k for k in one.files if k.startswith("moments:")):
        mean1, var1, _ = batch_variances(one[k])
        mean2, var2, _ = batch_variances(two[k])
        diffs += [(scaled_diff(mean2, mean1), f"{k} mean"), (scaled_diff(var2, var1), f"{k} variance")]
    worst = max(diffs)
    report(out_dir, "sync BN 2 GPUs x 4 == 1 GPU x 8", worst[0] <= EQUAL_TOL and str(two["kind"]) != "plain",
           f"{two['kind']} sync BN; worst {worst[0]:.2e} ({worst[1]}) over outputs, weights, running "
           f"means{', running variances' if same_convention else ''} and BN input statistics after "
           f"3 steps", measured=worst[0], tolerance=EQUAL_TOL)
    control = scaled_diff(plain["outputs"], one["outputs"])
    report(out_dir, "plain-BN control differs from 1 GPU", control >= CONTROL_MIN,
           f"2 GPUs with per-GPU statistics: outputs differ by {control:.2e} (must be >= "
           f"{CONTROL_MIN:g}, else the comparison above could not see a missing sync)",
           measured=control, tolerance=CONTROL_MIN)


def summary(out_dir) -> int:
    with open(os.path.join(out_dir, CHECKS_FILE), encoding="utf-8") as f:
        checks = [json.loads(line) for line in f if line.strip()]
    failed = [c["name"] for c in checks if c["passed"] is False]
    print(json.dumps({"name": "gpu_selftest", "passed": not failed and bool(checks),
                      "failed": failed, "checks": checks}))
    return len(failed) or (0 if checks else 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("local", "bn", "compare", "na", "summary"))
    parser.add_argument("out_dir")
    parser.add_argument("names", nargs="*", help="na: the checks that cannot run")
    parser.add_argument("--reason", default="")
    parser.add_argument("--cpu-smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "summary":
        return summary(args.out_dir)
    if args.mode == "na":
        for name in args.names:
            report(args.out_dir, name, None, args.reason)
        return 0
    dist.init()
    on_gpu = paddle.is_compiled_with_cuda() and paddle.device.get_device().startswith("gpu")
    if not on_gpu and not args.cpu_smoke:
        print("gpu_selftest: no usable GPU (CPU build of Paddle or no device); --cpu-smoke runs the "
              "code paths on the CPU", file=sys.stderr)
        return 2
    if on_gpu:
        paddle.set_flags({"FLAGS_cudnn_deterministic": True})
    if args.mode == "local":
        run_local(args.out_dir, on_gpu)
    elif args.mode == "bn":
        for variant in ("sync", "plain") if dist.get_world_size() > 1 else ("sync",):
            bn_run(args.out_dir, variant, on_gpu)
    else:
        try:
            compare(args.out_dir)
        except FileNotFoundError as e:
            report(args.out_dir, "sync BN 2 GPUs x 4 == 1 GPU x 8", False, f"a run left no result: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
