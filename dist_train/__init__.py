"""3D ResNets (Hara et al., CVPR 2018) on UCF-101 with PaddlePaddle fleet data parallelism."""

__version__ = "0.1.0"

import warnings  # noqa: E402

# Paddle 3 warns at import when no ccache is on PATH (it only matters for compiling custom C++
# operators, which this package never does); every other warning still shows.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)

# Loads zlib before Paddle (Paddle 2.6 crashes PNG I/O otherwise): see compat's docstring.
from dist_train import compat  # noqa: E402,F401
