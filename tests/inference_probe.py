"""Run an exported model through paddle.inference in a fresh process (test probe).

    python tests/inference_probe.py MODEL_DIR INPUT.npy OUTPUT.npz BATCH_SIZE [BATCH_SIZE ...]

Writes one logits array per batch size (``b<size>``) to OUTPUT.npz.
"""
import sys

import numpy as np

from dist_train.deploy.predict import InferenceModel


def main(argv):
    model_dir, input_path, output_path, *sizes = argv
    clips = np.load(input_path)
    model = InferenceModel(model_dir, "cpu")
    np.savez(output_path, **{f"b{s}": model.logits(clips, int(s)) for s in sizes})


if __name__ == "__main__":
    main(sys.argv[1:])
