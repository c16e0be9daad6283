"""Step micro-benchmarks for benchmarks/bench_train.py, each run in a child process of its own
(this file is the child's entry point):

- ``step_child``: optimizer steps of the demo network in one process (threads, layout, eager
  vs paddle.jit.to_static, malloc setting) and, optionally, a CPU kernel profile;
- ``dp_child``: a 2-rank job under paddle.distributed.launch comparing one process on the
  whole batch, two without communication, and the data-parallel variants (see ``dp_bench``).

    python benchmarks/bench_steps.py --step-child LAYOUT COMPILE STEPS PROFILE KEEP_FREED_MEMORY
    python benchmarks/bench_steps.py --dp-child ROUNDS      (under paddle.distributed.launch)
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def child_env(env_extra=None):
    """The environment of a benchmark child: this one plus ``env_extra``, CPU only."""
    env = dict(os.environ, **(env_extra or {}))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run(cmd, env_extra=None, timeout=600, cwd=None):
    done = subprocess.run(cmd, env=child_env(env_extra), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def step_bench(layout, compile_model, steps, profile, keep_freed_memory=True):
    """Child process: time optimizer steps of the demo network; optional kernel profile.
    ``keep_freed_memory``: the trainer's CPU malloc setting (train.cpu_keep_freed_memory)."""
    from dist_train import cpu_memory
    if keep_freed_memory:
        cpu_memory.keep_freed_memory()
    import paddle
    import paddle.nn.functional as F
    from dist_train.config import load_config
    from dist_train.models import Preprocess, build_model
    from dist_train.models.from_config import network_options, normalization

    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"),
                      [f"model.data_format={layout}"])
    paddle.seed(0)
    net = build_model(cfg["model.name"], cfg["model.num_classes"], **network_options(cfg))
    norm = normalization(cfg)
    model = paddle.nn.Sequential(Preprocess(norm["mean"], norm["std"], layout), net)
    if compile_model:
        model = paddle.jit.to_static(model, full_graph=True)
    opt = paddle.optimizer.Momentum(0.01, parameters=model.parameters())
    batch, t, side = cfg["train.batch_size"], cfg["data.clip_len"], cfg["data.crop_size"]
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.integers(0, 255, (batch, 3, t, side, side), dtype=np.uint8))
    y = paddle.to_tensor(rng.integers(0, cfg["model.num_classes"], batch))

    def step():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        return float(loss)

    first = [step() for _ in range(2)]  # warm-up (and compilation)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    # The median step: robust against other processes stealing the CPU for a while.
    result = {"clips_per_s": batch / float(np.median(times)), "loss0": first[0]}
    if profile:
        import paddle.profiler as profiler
        # on_trace_ready: the default would write profiler_log/ into the working directory
        prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None)
        prof.start()
        step()
        prof.stop()
        trace = os.path.join(tempfile.mkdtemp(), "trace.json")
        prof.export(trace, format="json")
        with open(trace) as f:
            events = json.load(f)
        events = events["traceEvents"] if isinstance(events, dict) else events
        kernels = {}
        for e in events:
            if e.get("ph") == "X" and e.get("cat") == "DygraphKernelLaunch":
                name = re.sub(r" kernel launch.*", "", e["name"])
                kernels[name] = kernels.get(name, 0.0) + e["dur"] / 1000.0
        total = sum(kernels.values())
        result["kernel_ms"] = {k: round(v, 2) for k, v in
                               sorted(kernels.items(), key=lambda kv: -kv[1])[:12]}
        result["kernel_total_ms"] = round(total, 1)
    print("STEP_JSON " + json.dumps(result))


def step_child(layout, compile_model, threads, steps, profile=False, onednn_verbose=False,
               keep_freed_memory=True):
    env = {"OMP_NUM_THREADS": str(threads)}
    if onednn_verbose:
        env.update(ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    out = run([PY, os.path.abspath(__file__), "--step-child", layout, str(int(compile_model)),
               str(steps), str(int(profile)), str(int(keep_freed_memory))], env)
    result = json.loads(out.split("STEP_JSON ", 1)[1].splitlines()[0])
    if onednn_verbose:
        result["onednn_primitive_execs"] = len(re.findall(r"(onednn|dnnl)_verbose,[^\n]*exec",
                                                          out))
    return result


def dp_bench(rounds):
    """Rank of a 2-rank job, steps of the demo net on fixed input, interleaved over rounds:

    - ``solo_16``: rank 0 alone (rank 1 waits in a barrier) steps the whole demo batch;
    - ``pair_8``: both ranks step half the batch each, no communication at all (what the
      machine gives two processes: ``two_process_ceiling`` = solo_16 / pair_8);
    - ``plain_bn_gloo`` / ``plain_bn``: DataParallel with half the batch per rank and plain BN,
      gradients averaged by DataParallel over gloo / by the shared-memory average (the trainer's
      CPU path); ``sync_bn_shm`` / ``sync_bn_gloo``: the CPU sync BN twin with everything over
      shared memory (the trainer's CPU path) / over gloo.
    Malloc keeps freed memory, as in the trainer (train.cpu_keep_freed_memory).
    Prints DP_JSON (median ms per step) on rank 0."""
    from dist_train import cpu_memory
    cpu_memory.keep_freed_memory()
    import paddle
    import paddle.nn.functional as F
    from dist_train import dist
    from dist_train.dist import host_allreduce, sync_bn
    from dist_train.config import load_config
    from dist_train.models import Preprocess, build_model
    from dist_train.models.from_config import EvalModel, network_options, normalization

    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"), [])

    def make(sync, wrap=True):
        paddle.seed(0)
        net = build_model(cfg["model.name"], cfg["model.num_classes"], **network_options(cfg))
        if sync:
            net, _ = sync_bn.convert_sync_batchnorm(net, world, on_gpu=False)
        norm = normalization(cfg)
        model = EvalModel(Preprocess(norm["mean"], norm["std"]), net)
        return (dist.wrap_model(model) if wrap else model,
                paddle.optimizer.Momentum(0.01, parameters=net.parameters()))

    variants = {"solo_16": make(False, wrap=False), "pair_8": make(False, wrap=False),
                "plain_bn_gloo": make(False), "plain_bn": make(False), "sync_bn_shm": make(True),
                "sync_bn_gloo": make(True)}
    averages = {name: host_allreduce.gradient_average(
        [p for p in variants[name][0].parameters() if not p.stop_gradient])
        for name in ("plain_bn", "sync_bn_shm")}
    batch, t, side = cfg["train.batch_size"], cfg["data.clip_len"], cfg["data.crop_size"]
    share = batch // world
    rng = np.random.default_rng(rank)
    x = paddle.to_tensor(rng.integers(0, 255, (batch, 3, t, side, side), dtype=np.uint8))
    y = paddle.to_tensor(rng.integers(0, cfg["model.num_classes"], batch))
    variants["sync_bn_shm"][0](x[:share])  # the first sync-BN forward picks the transport
    host_sum = host_allreduce._transport["sum_"]
    times = {name: [] for name in variants}

    def timed_steps(model, opt, inputs, labels, out, average=None):
        for i in range(3):  # the first step after a switch is not timed
            start = time.perf_counter()
            with dist.no_sync(model, average is not None):
                loss = F.cross_entropy(model(inputs), labels)
                loss.backward()
            if average is not None:
                average()
            opt.step()
            opt.clear_grad()
            float(loss)
            if i:
                out.append(time.perf_counter() - start)

    for round_no in range(rounds):
        for name, (model, opt) in variants.items():
            if name == "solo_16":
                if rank == 0:
                    timed_steps(model, opt, x, y, times[name])
                dist.barrier(f"solo_done_{round_no}", timeout_s=600)
                continue
            host_allreduce._transport["sum_"] = (host_allreduce.backend_sum_
                                                 if name == "sync_bn_gloo" else host_sum)
            timed_steps(model, opt, x[:share], y[:share], times[name], averages.get(name))
    if rank == 0:
        result = {name: round(1000 * float(np.median(v)), 1) for name, v in times.items()}
        result["two_process_ceiling"] = round(result["solo_16"] / result["pair_8"], 3)
        for name in ("plain_bn_gloo", "plain_bn", "sync_bn_shm", "sync_bn_gloo"):
            result[f"speedup_{name}"] = round(result["solo_16"] / result[name], 3)
        result["shared_memory_transport"] = host_sum is not host_allreduce.backend_sum_
        print("DP_JSON " + json.dumps(result))


def dp_child(rounds, log_dir):
    out = run([PY, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
               log_dir, os.path.abspath(__file__), "--dp-child", str(rounds)],
              {"OMP_NUM_THREADS": "1"})
    with open(os.path.join(log_dir, "workerlog.0")) as f:
        text = f.read()
    if "DP_JSON " not in text:
        raise RuntimeError(f"2-rank step benchmark printed no result:\n{out[-2000:]}\n{text[-3000:]}")
    return json.loads(text.split("DP_JSON ", 1)[1].splitlines()[0])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--step-child":
        step_bench(argv[1], argv[2] == "1", int(argv[3]), argv[4] == "1", argv[5] == "1")
        return 0
    if argv and argv[0] == "--dp-child":
        dp_bench(int(argv[1]))
        return 0
    raise SystemExit("bench_steps.py: use --step-child or --dp-child (benchmarks/bench_train.py "
                     "runs them)")


if __name__ == "__main__":
    sys.exit(main())
