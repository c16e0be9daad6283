"""Training and validation loops: plain functions, one code path for every setting.

- fp32 and AMP share the path: ``auto_cast(enable=...)`` and ``GradScaler(enable=...)``; on CPU
  AMP is reported once and runs disabled. conv3d is put on the white list (Paddle's O1 list
  lacks it, which would keep every 3D convolution in fp32). bfloat16 needs no loss scaling.
- Accumulation: the rank's share of a global batch is split into ``accum_steps`` micro-batches;
  every micro-batch but the last runs under ``no_sync`` (no gradient all-reduce). The loss of a
  micro-batch is divided by ``accum_steps``, and DataParallel averages over ranks, so the
  gradient is that of the mean loss over the global batch. ``accum_steps=1`` is the same loop.
- CPU ranks on one host average the gradients through shared memory instead
  (``average_gradients``, host_allreduce.py, where the measurements are): every micro-batch
  then runs under ``no_sync`` and the average follows the last backward.
- Validation is clip-level over whole videos sharded across ranks (different ranks may run
  different numbers of batches): no collective inside the loop, one all-reduce of
  [loss sum, correct, clips] at the end, so every rank gets identical metrics.
"""
from __future__ import annotations

import math
import time

import numpy as np
import paddle
import paddle.nn.functional as F

from dist_train import dist
from dist_train.dist import host_allreduce
from dist_train.errors import InputError, inject_fault
from dist_train.logs import get_logger, log_once
from dist_train.training.preempt import raise_agreed_failure

AMP_WHITE_LIST = {"conv3d"}


def amp_settings(cfg, on_gpu: bool) -> dict:
    """{"enabled", "level", "dtype"}; AMP is disabled (and said once) without a GPU."""
    enabled = bool(cfg["amp.enabled"])
    if enabled and not on_gpu:
        log_once("amp_cpu", "amp.enabled: AMP needs a GPU; running the same code path in fp32")
        enabled = False
    return {"enabled": enabled, "level": cfg["amp.level"], "dtype": cfg["amp.dtype"]}


def autocast(amp: dict):
    return paddle.amp.auto_cast(enable=amp["enabled"], custom_white_list=AMP_WHITE_LIST,
                                level=amp["level"], dtype=amp["dtype"])


def decorate_o2(network, optimizer, amp: dict):
    """AMP O2: parameters in the low-precision dtype (BatchNorm's stay float32), float32 master
    weights in the optimizer; (network, optimizer) unchanged for other settings. No
    ``save_dtype``: checkpoints cast to float32 once per tensor (checkpoint.write)."""
    if not (amp["enabled"] and amp["level"] == "O2"):
        return network, optimizer
    return paddle.amp.decorate(models=network, optimizers=optimizer, level="O2",
                               dtype=amp["dtype"], master_weight=True)


def make_scaler(amp: dict, init_loss_scale: float):
    """Dynamic loss scaling for float16 only; a disabled scaler passes everything through."""
    return paddle.amp.GradScaler(enable=amp["enabled"] and amp["dtype"] == "float16",
                                 init_loss_scaling=float(init_loss_scale))


def first_nonfinite_gradient(named_params) -> str | None:
    """Name of the first parameter whose gradient holds NaN or Inf (None when all are finite)."""
    for name, param in named_params:
        grad = param.grad
        if grad is not None and not bool(paddle.isfinite(paddle.cast(grad, "float32")).all()):
            return name
    return None


def accumulate_gradients(model, clips, labels, accum_steps: int, amp: dict, scaler,
                         after_micro_step=None, average_gradients=None):
    """Forward/backward of one rank's share in ``accum_steps`` micro-batches.

    Returns device tensors (loss sum, correct) over the share. ``after_micro_step(i)`` is called
    after each backward (tests inspect gradients there). ``average_gradients()``, when given,
    replaces DataParallel's all-reduce and runs after the last backward.
    """
    share = clips.shape[0]
    micro = share // accum_steps
    loss_sum = paddle.zeros([], "float32")
    correct = paddle.zeros([], "int64")
    for i in range(accum_steps):
        part = slice(i * micro, (i + 1) * micro)
        last = i == accum_steps - 1
        with dist.no_sync(model, skip_gradient_sync=not last or average_gradients is not None):
            with autocast(amp):
                logits = model(clips[part])
            logits = paddle.cast(logits, "float32")
            loss = F.cross_entropy(logits, labels[part])
            scaler.scale(loss / accum_steps).backward()
        if last and average_gradients is not None:
            average_gradients()
        if after_micro_step is not None:
            after_micro_step(i)
        loss_sum += loss.detach() * micro
        correct += (paddle.argmax(logits.detach(), axis=1) == labels[part]).astype("int64").sum()
    return loss_sum, correct


def optimizer_step(optimizer, scaler, params, named_params, *, clip_norm, nan_check, loss_sum,
                   global_step) -> None:
    """Unscale, check, clip, step, clear: the part after the gradients of a global batch."""
    if clip_norm or nan_check:
        scaler.unscale_(optimizer)
    if nan_check:
        bad = first_nonfinite_gradient(named_params)
        loss_value = float(loss_sum)
        # Decided together: a rank raising alone would leave the others waiting in a collective.
        any_rank_loss_bad = dist.all_reduce_max(0.0 if math.isfinite(loss_value) else 1.0)
        if any_rank_loss_bad:
            raise FloatingPointError(
                f"global step {global_step}: the loss is not finite on some rank (here: {loss_value})"
                + (f"; first parameter with a NaN/Inf gradient: '{bad}'" if bad else "")
                + " (lower train.lr, set optim.clip_grad_norm, or check the input data)")
        if bad is not None:
            message = f"global step {global_step}: gradient of '{bad}' holds NaN/Inf"
            if not scaler.is_enable():
                raise FloatingPointError(message + " (run with --debug, lower train.lr or "
                                         "set optim.clip_grad_norm)")
            get_logger().warning(message + "; the float16 loss scaler skips this step")
    if clip_norm:
        from dist_train.training.optim import clip_grad_norm
        clip_grad_norm(params, clip_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.clear_grad()


def peak_memory_text(on_gpu: bool) -> str:
    if not on_gpu:
        return "n/a"
    return f"{paddle.device.cuda.max_memory_allocated() / 2 ** 30:.2f} GB"


def _format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _batches_or_failure(loader):
    """(batch, None) per batch; (None, error) once and the end when the loader raises an input
    error (a bad frame, video or label), so the rank can take it to the per-step agreement."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except InputError as error:
            yield None, error
            return
        yield batch, None


def train_one_epoch(model, optimizer, scaler, loader, schedule, *, epoch, start_step,
                    steps_per_epoch, global_step, total_steps, accum_steps, amp, clip_norm,
                    nan_check, log_every, metrics, params, named_params, on_gpu,
                    after_step=None, average_gradients=None, before_step=None):
    """One (possibly resumed) epoch. ``after_step(global_step, next_step_in_epoch) -> stop``
    runs after every optimizer step on every rank (checkpoints, max_steps).
    ``before_step(global_step, failure)`` runs on every rank once its batch is fetched (or its
    loader raised the input error ``failure`` instead), and once more when the epoch's batches
    are used up: the per-step agreement (stop signals, failures), see training/preempt.py.

    Returns (global_step, {"loss", "top1", "clips"} over the epoch's steps run here, stopped).
    """
    log = get_logger()
    world = dist.get_world_size()
    model.train()
    epoch_sums = np.zeros(3)  # loss sum, correct, clips (this rank)
    # loss sum, correct, clips, data wait, step time, steps, waits for other ranks (this rank)
    window = np.zeros(7)
    waited_before = host_allreduce.waited_seconds()
    window_loss, window_correct = 0.0, 0
    stopped = False
    step = start_step
    tick = time.perf_counter()
    for step, (batch, failure) in enumerate(_batches_or_failure(loader), start=start_step):
        fetched = time.perf_counter()
        if before_step is not None:
            before_step(global_step, failure)  # collective; raises on a failure or a stop
        elif failure is not None:
            raise failure
        clips, labels = batch
        inject_fault("train_step")  # TEST HOOK: an injected bug in the trainer process
        lr = schedule.lr_at(global_step)
        optimizer.set_lr(lr)
        labels = labels.reshape([-1]).astype("int64")
        loss_sum, correct = accumulate_gradients(model, clips, labels, accum_steps, amp, scaler,
                                                 average_gradients=average_gradients)
        optimizer_step(optimizer, scaler, params, named_params, clip_norm=clip_norm,
                       nan_check=nan_check, loss_sum=loss_sum, global_step=global_step)
        global_step += 1
        done = time.perf_counter()
        waited = host_allreduce.waited_seconds()
        window += [0.0, 0.0, clips.shape[0], fetched - tick, done - tick, 1,
                   (waited or 0.0) - (waited_before or 0.0)]
        waited_before = waited
        # Device-side sums: converting every step would synchronise the GPU every step.
        window_loss, window_correct = window_loss + loss_sum, window_correct + correct
        tick = done
        if global_step % log_every == 0 or step + 1 == steps_per_epoch:
            window[0], window[1] = float(window_loss), int(window_correct)
            total = dist.all_reduce_sum(window)  # every rank logs at the same global steps
            step_time = total[4] / total[5]
            row = {"kind": "train", "epoch": epoch, "step": step + 1,
                   "steps_per_epoch": steps_per_epoch, "global_step": global_step,
                   "loss": total[0] / total[2], "top1": total[1] / total[2],
                   "lr": float(optimizer.get_lr()),  # the lr the step used, as the optimizer has it
                   "clips_per_s": total[2] / (total[4] / world), "data_wait": total[3] / total[4],
                   "step_time": step_time}
            if waited is not None:  # measured on the shared-memory transport only
                row["sync_wait"] = total[6] / total[4]
            metrics.write(row)
            if dist.is_main_process():
                log.info(f"epoch {epoch} step {step + 1}/{steps_per_epoch} loss {row['loss']:.4f} "
                         f"top1 {100 * row['top1']:.1f}% lr {lr:.4g} | {row['clips_per_s']:.1f} "
                         f"clips/s data {100 * row['data_wait']:.0f}% "
                         + (f"sync {100 * row['sync_wait']:.0f}% " if "sync_wait" in row else "")
                         + f"step {step_time:.3f}s "
                         f"ETA {_format_eta((total_steps - global_step) * step_time)} "
                         f"mem {peak_memory_text(on_gpu)}")
            epoch_sums += total[:3]
            window[:] = 0.0
            window_loss, window_correct = 0.0, 0
        if after_step is not None and after_step(global_step, step + 1):
            stopped = True
            break
    if not stopped and before_step is not None:
        before_step(global_step, None)  # the agreement after the epoch's last step
    if window[2]:  # a stop between log lines: count what was not logged yet
        window[0], window[1] = float(window_loss), int(window_correct)
        epoch_sums += dist.all_reduce_sum(window)[:3]
    clips_seen = max(epoch_sums[2], 1.0)
    return global_step, {"loss": float(epoch_sums[0] / clips_seen),
                         "top1": float(epoch_sums[1] / clips_seen), "clips": int(epoch_sums[2])}, stopped


@paddle.no_grad()
def validate(model, loader, amp: dict) -> dict:
    """Clip-level loss and top-1 over this rank's videos, then one all-reduce over ranks (which
    also carries an input error of any rank's loader: then every rank raises it)."""
    model.eval()
    sums = np.zeros(4)  # loss sum, correct, clips, ranks whose loader failed
    failure = None
    for batch, failure in _batches_or_failure(loader):
        if failure is not None:  # taken to the sum below: every rank stops there together
            sums[3] = 1.0
            break
        clips, labels = batch[0], batch[1].reshape([-1]).astype("int64")
        with autocast(amp):
            logits = model(clips)
        logits = paddle.cast(logits, "float32")
        sums[0] += float(F.cross_entropy(logits, labels, reduction="sum"))
        sums[1] += int((paddle.argmax(logits, axis=1) == labels).astype("int64").sum())
        sums[2] += clips.shape[0]
    total = dist.all_reduce_sum(sums)
    if total[3]:
        raise_agreed_failure(failure)
    clips_seen = max(total[2], 1.0)
    return {"val_loss": float(total[0] / clips_seen), "val_top1": float(total[1] / clips_seen),
            "val_clips": int(total[2])}
