"""3D ResNets (Hara et al., CVPR 2018) on UCF-101 with PaddlePaddle fleet data parallelism."""

__version__ = "0.1.0"
