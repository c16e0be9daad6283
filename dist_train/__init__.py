"""3D ResNets (Hara et al., CVPR 2018) on UCF-101 with PaddlePaddle fleet data parallelism."""

__version__ = "0.1.0"

# Loads zlib before Paddle (Paddle 2.6 crashes PNG I/O otherwise): see compat's docstring.
from dist_train import compat  # noqa: E402,F401
