"""Tiny model, optimizer and training step shared by the checkpoint tests and their probes."""
import numpy as np
import paddle
import paddle.nn as nn


class TinyNet(nn.Layer):
    head_name = "fc"

    def __init__(self, classes=3, channels=4):
        super().__init__()
        self.conv = nn.Conv3D(3, channels, 3, padding=1, bias_attr=False)
        self.bn = nn.BatchNorm3D(channels)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(nn.functional.relu(self.bn(self.conv(x))).mean(axis=[2, 3, 4]))


def make_training(seed=0, classes=3):
    paddle.seed(seed)
    model = TinyNet(classes)
    sched = paddle.optimizer.lr.MultiStepDecay(0.1, milestones=[2, 4], gamma=0.1)
    opt = paddle.optimizer.Momentum(sched, momentum=0.9, parameters=model.parameters(),
                                    weight_decay=1e-3)
    scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
    return model, opt, sched, scaler


def batch(step):
    rng = np.random.default_rng([7, step])
    x = paddle.to_tensor(rng.standard_normal((4, 3, 2, 6, 6)).astype("float32"))
    y = paddle.to_tensor(rng.integers(0, 3, 4).astype("int64"))
    return x, y


def train_step(model, opt, sched, scaler, step):
    x, y = batch(step)
    loss = nn.functional.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    opt.clear_grad()
    sched.step()
    return float(loss)


def weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def accumulators(model, opt):
    """Optimizer tensors keyed by structured parameter name (names differ between builds)."""
    names = {p.name: n for n, p in model.named_parameters()}
    out = {}
    for key, value in opt.state_dict().items():
        if key == "LR_Scheduler":
            continue
        owner = max((p for p in names if key.startswith(p + "_")), key=len)
        out[names[owner] + key[len(owner):]] = value.numpy().copy()
    return out


def train_state(global_step, **extra):
    state = {"epoch": 0, "step_in_epoch": global_step, "global_step": global_step,
             "best_metric": None, "best_epoch": None, "scheduler": {}, "finished": False}
    state.update(extra)
    return state
