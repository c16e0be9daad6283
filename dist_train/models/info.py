"""Model facts: trainable parameters, multiply-accumulates per clip, per-stage output shapes.

MACs are counted by forward hooks on the real network: a Conv3D costs output elements x
(C_in / groups) x kT x kH x kW, a Linear in x out per sample. ``describe_model`` makes this
cheap on CPU: it builds the model without initialising the convolution weights and lets each
convolution return zeros of its computed output shape, so every other layer (BN, pools,
concatenations, adds, the head) still runs and the hooks see the true shapes.
"""
import contextlib

import paddle
import paddle.nn as nn


def trainable_parameters(model):
    """Number of trainable scalars (BN affine included; running statistics excluded)."""
    return sum(int(p.size) for p in model.parameters() if not p.stop_gradient)


def _triple(value):
    return [int(value)] * 3 if isinstance(value, int) else [int(v) for v in value]


def conv3d_output_shape(conv, input_shape):
    """Output shape of ``conv`` (an nn.Conv3D with integer padding) for ``input_shape``."""
    channels_last = conv._data_format == "NDHWC"
    spatial = input_shape[1:4] if channels_last else input_shape[2:5]
    padding = conv._padding
    if isinstance(padding, str) or len(_triple(padding)) != 3:
        raise NotImplementedError(f"shape-only Conv3D needs integer padding, got {padding!r}")
    out = []
    for size, k, s, p, d in zip(spatial, _triple(conv._kernel_size), _triple(conv._stride),
                                _triple(padding), _triple(conv._dilation)):
        out.append((int(size) + 2 * p - d * (k - 1) - 1) // s + 1)
    n = int(input_shape[0])
    return [n] + out + [conv._out_channels] if channels_last else [n, conv._out_channels] + out


@contextlib.contextmanager
def shape_only_convolutions(model):
    """Inside the block every Conv3D of ``model`` returns zeros of its output shape."""
    convs = [layer for layer in model.sublayers() if isinstance(layer, nn.Conv3D)]

    def shape_only(conv):
        return lambda x: paddle.zeros(conv3d_output_shape(conv, x.shape), x.dtype)

    for conv in convs:
        conv.forward = shape_only(conv)
    try:
        yield
    finally:
        for conv in convs:
            del conv.forward


def _layer_macs(layer, inputs, output):
    if isinstance(layer, nn.Conv3D):
        kernel = _triple(layer._kernel_size)
        per_output = layer._in_channels // layer._groups * kernel[0] * kernel[1] * kernel[2]
        return int(output.size) * per_output
    if isinstance(layer, nn.Linear):
        in_features, out_features = layer.weight.shape
        return int(output.size) // out_features * in_features * out_features
    return 0


def _named_layer(model, dotted):
    layer = model
    for part in dotted.split("."):
        layer = getattr(layer, part)
    return layer


def measure(model, input_shape, shape_only=False):
    """Run one eval forward on zeros of ``input_shape`` with counting hooks.

    Returns {params, macs, gmacs (per clip: MACs / batch), stages: [{name, shape}], output}.
    ``stages`` follows ``model.stage_names`` when present, else the direct children; shapes
    omit the batch dimension.
    """
    stage_names = getattr(model, "stage_names", None) or [n for n, _ in model.named_children()]
    macs, stages, hooks = [0], {}, []

    def count(layer, inputs, output):
        macs[0] += _layer_macs(layer, inputs, output)

    def record(name):
        def hook(layer, inputs, output):  # a post hook must return None to keep the output
            stages.setdefault(name, list(output.shape[1:]))
        return hook

    for layer in model.sublayers():
        if isinstance(layer, (nn.Conv3D, nn.Linear)):
            hooks.append(layer.register_forward_post_hook(count))
    for name in stage_names:
        hooks.append(_named_layer(model, name).register_forward_post_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            guard = shape_only_convolutions(model) if shape_only else contextlib.nullcontext()
            with guard:
                output = model(paddle.zeros(input_shape, "float32"))
    finally:
        for hook in hooks:
            hook.remove()
        if was_training:
            model.train()
    batch = int(input_shape[0])
    return {"params": trainable_parameters(model), "macs": macs[0] // batch,
            "gmacs": macs[0] / batch / 1e9,
            "stages": [{"name": n, "shape": [int(v) for v in stages[n]]} for n in stage_names
                       if n in stages],
            "output": [int(v) for v in output.shape]}


def describe_model(name, num_classes, frames=16, size=112, **options):
    """``measure`` of ``build_model(name, ...)`` on one clip, cheap enough for any depth.

    The model is built under ``paddle.LazyGuard`` (same parameter shapes, no initialisation);
    only the non-convolution parameters, which the shape-only forward reads, are initialised.
    """
    from dist_train.models import build_model  # the package imports this module's siblings, not the reverse

    with paddle.LazyGuard():
        model = build_model(name, num_classes, **options)
    for layer in model.sublayers():
        if not isinstance(layer, nn.Conv3D):
            for param in layer.parameters(include_sublayers=False):
                param.initialize()
    channels_last = options.get("data_format", "NCDHW") == "NDHWC"
    shape = [1, frames, size, size, 3] if channels_last else [1, 3, frames, size, size]
    return measure(model, shape, shape_only=True)
