"""The training run: build loaders and network, resume, loop over epochs with validation and
checkpoints, stop together on preemption. ``dist_train/train.py`` is its command line."""
from __future__ import annotations

import json
import os
import random
import time
import types

import numpy as np

import dist_train  # noqa: F401  (first: loads zlib before Paddle 2.6 can shadow it, see compat.py)
import paddle

from dist_train import checkpoint, cpu_memory, dist
from dist_train.training import engine, optim, preempt
from dist_train.dist import host_allreduce, sync_bn
from dist_train.config import ConfigError, load_config
from dist_train.data import checks, factory
from dist_train.data.device_prefetch import DevicePrefetcher, pinned_gpu_copy
from dist_train.data.lists import DataError
from dist_train.errors import write_error
from dist_train.data.loader import make_loader
from dist_train.data.sampler import EvalBatchSampler, GlobalBatchSampler
from dist_train.logs import get_logger, setup_logging
from dist_train.training.metrics import MetricsLog, truncate_metrics
from dist_train.training.sample_log import SAMPLE_LOG_ENV, SampleLog
from dist_train.models import Preprocess, build_model, finetune
from dist_train.rundir import atomic_write_text, prepare_run_dir
from dist_train.models.from_config import EvalModel, network_options, normalization

DEBUG_TRAIN_BATCHES, DEBUG_VAL_VIDEOS, DEBUG_MAX_EPOCHS = 3, 8, 2


def debug_config(cfg):
    if dist.launched_world_size() > 1:
        raise ConfigError("--debug runs one process: start train.py directly, not under the launcher")
    return cfg.replace(**{"data.num_workers": 0, "train.nan_check": True, "log.every_steps": 1,
                          "train.epochs": min(cfg["train.epochs"], DEBUG_MAX_EPOCHS),
                          "run.dir": cfg["run.dir"].rstrip("/") + "-debug"})


def check_batch(cfg, world: int) -> None:
    unit = world * cfg["train.accum_steps"]
    if cfg["train.accum_steps"] < 1 or cfg["train.batch_size"] % unit:
        raise ConfigError(
            f"train.batch_size {cfg['train.batch_size']} must be divisible by world size {world} x "
            f"train.accum_steps {cfg['train.accum_steps']} = {unit}; e.g. use "
            f"{max(unit, cfg['train.batch_size'] // unit * unit)}")


def prepare_run(cfg, accept_change: bool) -> None:
    """Rank 0 creates the run directory; its error (if any) is raised on every rank."""
    error = None
    if dist.is_main_process():
        try:
            prepare_run_dir(cfg, accept_change)
        except Exception as e:  # every rank must hear of it, or they would wait for rank 0
            error = (str(e) if isinstance(e, ConfigError) else
                     str(write_error(e, cfg["run.dir"], "preparing the run directory: writing"))
                     if isinstance(e, OSError) else f"{type(e).__name__}: {e}")
    dist.barrier("prepare-run-dir", timeout_s=300)
    error = dist.broadcast_object(error)
    if error is not None:
        raise ConfigError(error)


DELETE_AFTER_CHECKS_ENV = "DIST_TRAIN_DELETE_AFTER_CHECKS"  # test hook: a file removed after them


def check_data(cfg) -> None:
    """COLLECTIVE: rank 0 checks the clip lists (data/checks.py; data.check_lists), then every
    rank raises its error, before any loader worker starts."""
    error = None
    if cfg["data.check_lists"] and dist.is_main_process():
        start = time.perf_counter()
        lists = [cfg["data.train_list"]] + ([cfg["data.val_list"]] if cfg["val.every_epochs"] else [])
        try:
            checks.check_lists(cfg, lists)
            get_logger().info(f"clip lists checked in {time.perf_counter() - start:.2f} s "
                              "(data.check_lists)")
        except DataError as e:
            error = str(e)
    if cfg["data.check_lists"]:
        error = dist.broadcast_object(error)
    if error is not None:
        failure = DataError(error)
        failure.on_every_rank = True
        raise failure
    doomed = os.environ.get(DELETE_AFTER_CHECKS_ENV)
    if doomed and dist.is_main_process() and os.path.exists(doomed):
        os.remove(doomed)  # TEST HOOK: a frame that disappears after the checks


def build_loaders(cfg, rank: int, world: int, debug: bool, host_batches: bool = False):
    workers = cfg["data.num_workers"]
    train_ds = factory.build_train_dataset(cfg)
    num_train = len(train_ds)
    if debug:
        num_train = min(num_train, DEBUG_TRAIN_BATCHES * cfg["train.batch_size"])
    sampler = GlobalBatchSampler(num_train, cfg["train.batch_size"], rank, world, cfg["train.seed"])
    train_loader = make_loader(train_ds, sampler, workers, cfg["data.loader"],
                               host_batches=host_batches)
    val_loader = None
    if cfg["val.every_epochs"] > 0:
        val_ds = factory.build_eval_dataset(cfg, "val")
        shardable = val_ds
        if debug:  # the first videos only; EvalBatchSampler needs just video_clip_ranges
            shardable = types.SimpleNamespace(video_clip_ranges=val_ds.video_clip_ranges[:DEBUG_VAL_VIDEOS])
        val_sampler = EvalBatchSampler(shardable, cfg["val.batch_size"], rank, world)
        val_loader = make_loader(val_ds, val_sampler, workers, cfg["data.loader"])
    return sampler, train_loader, val_loader


def build_network(cfg, world: int, on_gpu: bool, weights: str | None):
    """The network (seeded, identical on every rank), initial weights, fine-tuning, sync BN."""
    log = get_logger()
    paddle.seed(cfg["train.seed"])
    network = build_model(cfg["model.name"], cfg["model.num_classes"], **network_options(cfg))
    if weights:
        report = checkpoint.load_weights(weights, network)
        log.info(f"initial weights from {weights}: {len(report.get('loaded', []))} tensors"
                 + (", new classifier head" if report.get("new_head") else ""))
    if cfg["model.ft_begin_module"]:
        finetune.set_ft_begin_module(network, cfg["model.ft_begin_module"])
    if cfg["model.freeze_bn"]:
        log.info(f"frozen BatchNorm layers: {finetune.freeze_bn(network)}")
    elif cfg["model.sync_bn"]:
        network, _ = sync_bn.convert_sync_batchnorm(network, world, on_gpu)
    return network


def compile_model(model):
    """paddle.jit.to_static with graph breaks allowed (the CPU sync BN's collectives run eagerly).
    Parameters and state-dict keys stay those of the eager layer. Off by default: on CPU it
    gives the eager losses at the same speed with plain BN (3D convolutions dominate) and is
    slower with the CPU sync BN twin."""
    get_logger().info("train.compile: paddle.jit.to_static(full_graph=False) on the training model")
    return paddle.jit.to_static(model, full_graph=False)


_run = {"dir": None}  # this process's run directory, once prepared (for record_input_error)
EXIT_RECORD = "exit.rank{rank}.json"  # in <run.dir>/logs; launch.sh reads it


def current_rank() -> int:
    """This process's rank (the launcher's variable before the job is joined)."""
    return dist.get_rank() if dist.is_distributed() else int(os.environ.get("PADDLE_TRAINER_ID") or 0)


def record_input_error(message: str, printed: bool) -> None:
    """Write ``<run.dir>/logs/exit.rank<R>.json`` ({"exit_code": 2, "message"}): launch.sh
    does not retry an input error even when the launcher reports a peer's exit code (a rank
    the launcher SIGKILLed after this one failed alone, e.g. out of memory in its forward)."""
    if _run["dir"] is None:
        return
    path = os.path.join(_run["dir"], "logs", EXIT_RECORD.format(rank=current_rank()))
    try:
        atomic_write_text(path, json.dumps({"exit_code": 2, "message": message,
                                            "reported_here": printed}) + "\n")
    except OSError as e:  # a full or read-only run directory: the exit code still tells launch.sh
        get_logger().warning(f"could not record the input error in {path}: {e}")


def train(args, at_end=None) -> int:
    """The whole run for parsed command line ``args``; ``at_end(cfg)`` runs on every rank after
    a finished (not preempted) run. Returns the process exit code."""
    cfg = load_config(args.config, args.overrides)
    preempt.install_handlers()  # before any loader worker is forked
    dist.init()
    if args.debug:
        cfg = debug_config(cfg)
    # The network and normalisation the initial weights were trained with (before the run
    # directory records the config): taken where the config keeps defaults, else checked.
    cfg, adopted = checkpoint.adopt_source_model(cfg, args.weights or cfg["model.pretrained"])
    rank, world = dist.get_rank(), dist.get_world_size()
    on_gpu = paddle.device.get_device().startswith("gpu")
    check_batch(cfg, world)
    prepare_run(cfg, args.accept_config_change)
    run_dir = _run["dir"] = cfg["run.dir"]
    if rank == 0:
        preempt.clear_marker(run_dir)
    log = setup_logging(run_dir, rank)
    log.info(f"rank {rank}/{world} on {paddle.device.get_device()}, Paddle {paddle.__version__}, "
             f"run dir {run_dir}")
    if adopted:
        log.info(f"taken from the initial weights {args.weights or cfg['model.pretrained']}: "
                 + ", ".join(adopted))
    if cfg["train.cpu_keep_freed_memory"] and not on_gpu:
        log.info(cpu_memory.keep_freed_memory())  # before loader workers fork: they inherit it
    if cfg["train.deterministic"] and on_gpu:
        paddle.set_flags({"FLAGS_cudnn_deterministic": True})
    random.seed(cfg["train.seed"])
    np.random.seed(cfg["train.seed"])

    check_data(cfg)
    names = factory.class_names(cfg)  # checks the class index against the lists; saved below
    # On a GPU the shared-memory loader hands out host batches that DevicePrefetcher copies.
    prefetch = on_gpu and cfg["data.loader"] == "shm"
    sampler, train_loader, val_loader = build_loaders(cfg, rank, world, args.debug, prefetch)
    steps_per_epoch = sampler.steps_per_epoch
    resume_path = checkpoint.resolve_resume(run_dir, args.resume)
    weights = None if resume_path else (args.weights or cfg["model.pretrained"])
    network = build_network(cfg, world, on_gpu, weights)
    amp = engine.amp_settings(cfg, on_gpu)
    # The parameter groups (pretrained lr multiplier) must not depend on whether this is a resume.
    has_pretrained = bool(args.weights or cfg["model.pretrained"])
    optimizer = optim.build_optimizer(cfg, network, has_pretrained,
                                      multi_precision=amp["enabled"] and amp["level"] == "O2")
    network, optimizer = engine.decorate_o2(network, optimizer, amp)
    scaler = engine.make_scaler(amp, cfg["amp.init_loss_scale"])
    norm = normalization(cfg)
    train_model = EvalModel(Preprocess(norm["mean"], norm["std"], cfg["model.data_format"]), network)
    if cfg["train.compile"]:
        train_model = compile_model(train_model)
    model = dist.wrap_model(train_model)  # DataParallel broadcasts rank 0's weights
    schedule = optim.LRSchedule.from_config(cfg, steps_per_epoch)
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_metric": None,
             "best_epoch": None, "scheduler": schedule.state_dict(), "finished": False}
    if resume_path:
        state.update(checkpoint.load_checkpoint(resume_path, model=network, optimizer=optimizer,
                                                scaler=scaler))
        schedule.load_state_dict(state["scheduler"])
        if rank == 0:
            removed = truncate_metrics(run_dir, state["global_step"], state["epoch"])
            log.info(f"resumed at epoch {state['epoch']} step {state['step_in_epoch']} (global "
                     f"step {state['global_step']}); {removed} metrics rows after it removed")
        if state.get("class_names", names) != names:
            log.warning("the class names of the lists differ from the checkpoint's; the next "
                        "checkpoints record the lists' names")
    state["class_names"] = names  # checkpoints carry them (state.json, train_state)
    if state["finished"]:
        log.info("the run is already finished (nothing to do); use another run.dir to train again")
        return 0

    preempt.arm_kill_hook(optimizer, rank, lambda: state["global_step"] + 1)  # tests only
    metrics = MetricsLog(run_dir, rank == 0, cfg["log.visualdl"], curves=cfg["log.curves"])
    samples = SampleLog(run_dir, rank, state["global_step"]) if os.environ.get(SAMPLE_LOG_ENV) else None
    stop = None
    try:
        train_loop(cfg, state, model, train_model, network, optimizer, scaler, schedule, sampler,
                   samples.recording(train_loader) if samples else train_loader, val_loader, amp,
                   metrics, on_gpu, samples)
    except preempt.Preempted as e:
        stop = e
    finally:
        metrics.close()
        if samples is not None:
            samples.close()
        for loader in (train_loader, val_loader):
            if hasattr(loader, "close"):  # the shared-memory loader's persistent workers
                loader.close()
    if stop is not None:
        if rank == 0:
            preempt.write_marker(run_dir, stop)
        dist.barrier("preempted", timeout_s=20)  # nobody exits before the marker exists
        log.info(f"{stop}; exit code {preempt.PREEMPTED_EXIT_CODE}")
        return preempt.PREEMPTED_EXIT_CODE
    if at_end is not None:
        at_end(cfg)
    return 0


def train_loop(cfg, state, model, train_model, network, optimizer, scaler, schedule, sampler,
               train_loader, val_loader, amp, metrics, on_gpu, samples=None) -> None:
    log = get_logger()
    run_dir, epochs = cfg["run.dir"], cfg["train.epochs"]
    spe = sampler.steps_per_epoch
    max_steps = cfg["train.max_steps"]
    total_steps = min(epochs * spe, max_steps or epochs * spe)
    params = optim.trainable_parameters(optimizer)
    named_params = [(n, p) for n, p in network.named_parameters() if not p.stop_gradient]
    log.info(f"{epochs} epochs x {spe} steps, global batch {cfg['train.batch_size']} = "
             f"{dist.get_world_size()} ranks x {cfg['train.accum_steps']} micro-steps x "
             f"{cfg['train.batch_size'] // dist.get_world_size() // cfg['train.accum_steps']} clips; "
             f"{len(params)} trainable tensors")
    # GPU: batch k+1 is copied from pinned memory while batch k computes (host batches, above).
    batches = (DevicePrefetcher(train_loader, pinned_gpu_copy())
               if on_gpu and cfg["data.loader"] == "shm" else train_loader)
    # Collective (every rank, here): CPU ranks on one host average gradients in shared memory.
    names = {id(p): n for n, p in named_params}
    average_gradients = None if on_gpu else host_allreduce.gradient_average(
        params, [names.get(id(p), p.name) for p in params])

    skipped, skipped_count = set(), [0]  # data.skip_bad_samples: files and replacements so far
    saved = {}  # global step -> checkpoint saved there (a stop right after it saves no twin)

    def save(is_best=False):
        state["scheduler"] = schedule.state_dict()
        saved.clear()
        saved[state["global_step"]] = checkpoint.save_checkpoint(
            run_dir, checkpoint.step_tag(state["global_step"]), model=network, optimizer=optimizer,
            scaler=scaler, train_state=state, cfg=cfg, keep_last=cfg["ckpt.keep_last"],
            is_best=is_best)
        return saved[state["global_step"]]

    def before_step(global_step, failure):
        # Collective, once per step: every rank stops at this same point, on a signal (after
        # saving) or on an input error of any rank's loader (raised by agree_to_stop).
        if preempt.agree_to_stop(failure):
            raise preempt.Preempted(global_step, saved.get(global_step) or save())

    def after_step(global_step, next_step):
        state.update(step_in_epoch=next_step, global_step=global_step)
        if samples is not None:
            samples.write(sampler, state["epoch"], next_step - 1, global_step)
        if cfg["ckpt.every_steps"] and global_step % cfg["ckpt.every_steps"] == 0:
            save()
        return max_steps is not None and global_step >= max_steps

    for epoch in range(state["epoch"], epochs):
        state["epoch"] = epoch
        sampler.set_epoch(epoch, state["step_in_epoch"])
        global_step, stats, stopped = engine.train_one_epoch(
            model, optimizer, scaler, batches, schedule, epoch=epoch,
            start_step=state["step_in_epoch"], steps_per_epoch=spe, global_step=state["global_step"],
            total_steps=total_steps, accum_steps=cfg["train.accum_steps"], amp=amp,
            clip_norm=cfg["optim.clip_grad_norm"], nan_check=cfg["train.nan_check"],
            log_every=cfg["log.every_steps"], metrics=metrics, params=params,
            named_params=named_params, on_gpu=on_gpu, after_step=after_step,
            average_gradients=average_gradients, before_step=before_step)
        finished = stopped or epoch + 1 == epochs
        every_val = cfg["val.every_epochs"]
        row = {"kind": "epoch", "epoch": epoch, "global_step": global_step, "loss": stats["loss"],
               "top1": stats["top1"], "lr": schedule.lr_at(max(0, global_step - 1))}
        is_best = False
        if val_loader is not None and every_val and ((epoch + 1) % every_val == 0 or finished):
            val = engine.validate(train_model, val_loader, amp)
            schedule.on_validation(val["val_loss"])
            is_best = bool(state["best_metric"] is None or val["val_top1"] > state["best_metric"])
            if is_best:
                state["best_metric"], state["best_epoch"] = val["val_top1"], epoch
            row.update(val, is_best=is_best)
        if cfg["data.skip_bad_samples"]:
            count, names = train_loader.dataset.reset_bad_samples()
            per_rank = dist.all_gather_object((count, names))
            row["bad_samples"] = int(sum(c for c, _ in per_rank))
            row["bad_sample_files"] = sorted({n for _, rank_names in per_rank for n in rank_names})
            skipped.update(row["bad_sample_files"])
            skipped_count[0] += row["bad_samples"]
        metrics.write(row)
        log.info(f"epoch {epoch} done: train loss {stats['loss']:.4f} top1 {100 * stats['top1']:.1f}%"
                 + (f", val loss {row['val_loss']:.4f} clip top1 {100 * row['val_top1']:.1f}% on "
                    f"{row['val_clips']} clips{' (best)' if is_best else ''}" if "val_loss" in row else ""))
        if not stopped:
            state.update(epoch=epoch + 1, step_in_epoch=0)
        state.update(global_step=global_step, finished=finished)
        every_ckpt = cfg["ckpt.every_epochs"]
        if finished or is_best or (every_ckpt and (epoch + 1) % every_ckpt == 0):
            save(is_best)
        if finished:
            break
    if cfg["data.skip_bad_samples"]:
        log.info(f"data.skip_bad_samples: {skipped_count[0]} bad sample(s) replaced in this run"
                 + (f", from {len(skipped)} file(s): {', '.join(sorted(skipped))}" if skipped else ""))
    log.info(f"training finished at global step {state['global_step']}; best val clip top1 "
             f"{state['best_metric']} (epoch {state['best_epoch']})")
