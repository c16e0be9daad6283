"""Training-speed benchmark on CPU with the demo config (configs/demo.yaml).

1. Trainer runs (dist_train/train.py, the real CLI) on a generated synthetic dataset:
   ``clips_per_s_1proc`` and ``clips_per_s_2proc`` (0 loader workers, OMP_NUM_THREADS=1 per
   process, 2 processes through paddle.distributed.launch), ``data_wait_fraction`` (1 process,
   1 loader worker, the demo's data.num_workers). Numbers come from the trainer's own
   metrics.jsonl (the first logged window is warm-up and dropped).
2. Step micro-benchmarks of the demo network in a child process per setting (threads per
   process 1/2, layout NCDHW/NDHWC, eager vs paddle.jit.to_static), and which CPU kernels ran:
   kernel time per op from paddle.profiler, plus the count of oneDNN primitive executions
   (ONEDNN_VERBOSE=1; 0 means plain Paddle CPU kernels).

Ends by printing ONE JSON object on the last line.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def run(cmd, env_extra=None, timeout=600, cwd=None):
    env = dict(os.environ, **(env_extra or {}))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def make_demo_data(root, videos_per_class):
    syn = os.path.join(root, "syn")
    run([PY, os.path.join(REPO, "data_tools", "make_synthetic.py"), "--out", syn,
         "--videos-per-class", str(videos_per_class)])
    run([PY, os.path.join(REPO, "data_tools", "extract_frames.py"), "--src",
         os.path.join(syn, "UCF-101"), "--dst", os.path.join(root, "frames"), "--workers", "2"])
    run([PY, os.path.join(REPO, "data_tools", "build_lists.py"), "--frames",
         os.path.join(root, "frames"), "--splits", os.path.join(syn, "ucfTrainTestlist"),
         "--out", os.path.join(root, "lists")])
    lists = sorted(os.listdir(os.path.join(root, "lists")))
    train = [n for n in lists if "train" in n][0]
    val = [n for n in lists if "val" in n or "test" in n][0]
    return os.path.join(root, "lists", train), os.path.join(root, "lists", val)


def train_overrides(root, train_list, val_list, run_name, workers, steps, extra=()):
    return ["-o", f"run.dir={os.path.join(root, run_name)}", "-o",
            f"data.root={os.path.join(root, 'frames')}", "-o", f"data.train_list={train_list}",
            "-o", f"data.val_list={val_list}", "-o", f"data.num_workers={workers}",
            "-o", f"train.max_steps={steps}", "-o", "val.every_epochs=0", "-o",
            "ckpt.every_epochs=0", "-o", "log.every_steps=5", "-o", "log.visualdl=false",
            "-o", "export.at_end=false", "-o", "train.epochs=1000"] + list(extra)


def trainer_rate(root, run_name):
    """(clips/s, data-wait fraction) over the logged windows after the first."""
    with open(os.path.join(root, run_name, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if r.get("kind") == "train"][1:]
    if not rows:
        raise RuntimeError(f"{run_name}: no training rows after warm-up; raise --steps")
    steps = [r["step_time"] for r in rows]
    clips = sum(r["clips_per_s"] * r["step_time"] for r in rows) / sum(steps)
    wait = sum(r["data_wait"] * r["step_time"] for r in rows) / sum(steps)
    return clips, wait


def train_cli(root, lists, run_name, workers, steps, nproc=1, threads=1, extra=()):
    args = [os.path.join(REPO, "dist_train", "train.py"), "-c",
            os.path.join(REPO, "configs", "demo.yaml")]
    args += train_overrides(root, *lists, run_name, workers, steps, extra)
    env = {"OMP_NUM_THREADS": str(threads)}
    if nproc == 1:
        run([PY] + args, env, cwd=root)
    else:
        run([PY, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
             os.path.join(root, run_name + "_logs")] + args, env, cwd=root)
    return trainer_rate(root, run_name)


# ----------------------------------------------------------------------------- step bench

def step_bench(layout, compile_model, steps, profile):
    """Child process: time optimizer steps of the demo network; optional kernel profile."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F
    from dist_train.config import load_config
    from dist_train.models import Preprocess, build_model
    from dist_train.videoeval import network_options, normalization

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


def step_child(layout, compile_model, threads, steps, profile=False, onednn_verbose=False):
    env = {"OMP_NUM_THREADS": str(threads)}
    if onednn_verbose:
        env.update(ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    out = run([PY, os.path.abspath(__file__), "--step-child", layout, str(int(compile_model)),
               str(steps), str(int(profile))], env)
    result = json.loads(out.split("STEP_JSON ", 1)[1].splitlines()[0])
    if onednn_verbose:
        result["onednn_primitive_execs"] = len(re.findall(r"(onednn|dnnl)_verbose,[^\n]*exec",
                                                          out))
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--step-child":
        step_bench(argv[1], argv[2] == "1", int(argv[3]), argv[4] == "1")
        return 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="end with one JSON line (default)")
    parser.add_argument("--steps", type=int, default=25, help="optimizer steps per trainer run")
    parser.add_argument("--videos-per-class", type=int, default=30)
    parser.add_argument("--skip-trainer", action="store_true", help="step benchmarks only")
    args = parser.parse_args(argv)
    result = {"config": "configs/demo.yaml", "cpus": os.cpu_count(),
              "load_avg_1m_start": os.getloadavg()[0]}
    start = time.time()
    if not args.skip_trainer:
        with tempfile.TemporaryDirectory(prefix="bench_train_") as root:
            lists = make_demo_data(root, args.videos_per_class)
            result["data_setup_s"] = round(time.time() - start, 1)
            one, _ = train_cli(root, lists, "p1", 0, args.steps)
            two, _ = train_cli(root, lists, "p2", 0, args.steps, nproc=2)
            _, wait = train_cli(root, lists, "w1", 1, args.steps)
            result.update(clips_per_s_1proc=one, clips_per_s_2proc=two,
                          speedup_2proc=two / one, data_wait_fraction=wait)
    steps = 7
    settings = {"eager_NCDHW_1thread": ("NCDHW", False, 1), "eager_NCDHW_2threads": ("NCDHW", False, 2),
                "eager_NDHWC_1thread": ("NDHWC", False, 1), "static_NCDHW_1thread": ("NCDHW", True, 1)}
    result["step_clips_per_s"], first_losses = {}, {}
    for name, (layout, compiled, threads) in settings.items():
        try:
            child = step_child(layout, compiled, threads, steps)
            rate, first_losses[name] = round(child["clips_per_s"], 2), child["loss0"]
        except RuntimeError as error:  # report (e.g. to_static unsupported), keep going
            rate = f"failed: {str(error).strip().splitlines()[-1][:200]}"
        result["step_clips_per_s"][name] = rate
    # Same seed and batch: every setting must give the same first loss (correctness check).
    reference = first_losses.get("eager_NCDHW_1thread")
    result["step_first_loss"] = first_losses
    result["step_first_loss_max_abs_diff"] = max(
        (abs(v - reference) for v in first_losses.values()), default=None) if reference else None
    kernels = step_child("NCDHW", False, 1, 1, profile=True, onednn_verbose=True)
    result["cpu_kernels"] = {"kernel_ms_per_step": kernels["kernel_ms"],
                             "kernel_total_ms": kernels["kernel_total_ms"],
                             "onednn_primitive_execs": kernels["onednn_primitive_execs"]}
    result["total_s"] = round(time.time() - start, 1)
    result["load_avg_1m_end"] = os.getloadavg()[0]
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
