"""Input layer: uint8 (or float) clips [N, 3, T, H, W] in 0-255 -> normalised float32.

Mean and std are in 0-255 units. ``std=None`` subtracts the mean only, the paper's
ActivityNet setting. The layer runs on the accelerator so loaders ship uint8.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from dist_train.models.layers import check_data_format

NORMALIZATION_PRESETS = {
    # CVPR2018 weights: pixels in [0, 255] minus the ActivityNet mean, no std division.
    "activitynet": {"mean": [114.7748, 107.7354, 99.4750], "std": None},
    # 2020 weights (master branch): Kinetics mean/std of [0, 1] pixels, here x 255.
    "kinetics": {"mean": [0.4345 * 255, 0.4051 * 255, 0.3775 * 255],
                 "std": [0.2768 * 255, 0.2713 * 255, 0.2737 * 255]},
    "imagenet": {"mean": [0.485 * 255, 0.456 * 255, 0.406 * 255],
                 "std": [0.229 * 255, 0.224 * 255, 0.225 * 255]},
}


MIN_STD = 0.01  # keeps std^2 - _EPSILON positive
_EPSILON = 1e-5


def normalization_from_preset(name):
    """A copy of preset ``name`` as {"mean": [...], "std": [...] or None}."""
    if name not in NORMALIZATION_PRESETS:
        raise ValueError(f"unknown normalisation preset {name!r}; "
                         f"choose one of {', '.join(NORMALIZATION_PRESETS)}")
    preset = NORMALIZATION_PRESETS[name]
    return {"mean": list(preset["mean"]), "std": None if preset["std"] is None
            else list(preset["std"])}


def _three_values(values, what):
    values = [float(v) for v in values]
    if len(values) != 3:
        raise ValueError(f"{what} needs 3 values (R, G, B), got {values}")
    return values


class Preprocess(nn.Layer):
    """(x - mean) / std per RGB channel on input [N, 3, T, H, W] (the loader's layout).

    ``data_format`` is the layout of the model this layer feeds: with ``"NDHWC"`` the output
    is transposed once to [N, T, H, W, 3] for a channels-last model.
    """

    def __init__(self, mean, std=None, data_format="NCDHW"):
        super().__init__()
        self.data_format = check_data_format(data_format)
        self.mean_values = _three_values(mean, "mean")
        self.std_values = None if std is None else _three_values(std, "std")
        if self.std_values is not None and min(self.std_values) < MIN_STD:
            raise ValueError(f"std must be at least {MIN_STD} (0-255 units), got {self.std_values}")
        # Non-persistable: normalisation is configuration, kept out of the weights.
        # The normalisation runs as Paddle's inference batch-norm kernel: one fused pass, ~5x
        # faster on CPU than a broadcasting subtract and multiply, equal to (x - mean) / std
        # within 1 ulp. Running variance std^2 - eps with epsilon eps: GPU kernels raise
        # epsilon to cuDNN's minimum 1e-5, so eps = 1e-5 gives std on every device.
        stds = [1.0, 1.0, 1.0] if std is None else self.std_values
        variance = [s * s - _EPSILON for s in stds]
        for name, values in (("mean", self.mean_values), ("variance", variance),
                             ("scale", [1.0] * 3), ("shift", [0.0] * 3)):
            self.register_buffer(name, paddle.to_tensor(values, "float32"), persistable=False)

    @classmethod
    def from_preset(cls, name, data_format="NCDHW"):
        preset = normalization_from_preset(name)
        return cls(preset["mean"], preset["std"], data_format)

    def forward(self, x):
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"Preprocess expects [N, 3, T, H, W], got shape {list(x.shape)}")
        if self.data_format == "NDHWC":  # transpose first: the input may still be uint8
            x = paddle.transpose(x, [0, 2, 3, 4, 1])
        if x.dtype != paddle.float32:
            x = paddle.cast(x, "float32")
        return F.batch_norm(x, self.mean, self.variance, weight=self.scale, bias=self.shift,
                            training=False, epsilon=_EPSILON, data_format=self.data_format)

    def extra_repr(self):
        return f"mean={self.mean_values}, std={self.std_values}, data_format={self.data_format}"
