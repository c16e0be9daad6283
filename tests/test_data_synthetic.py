"""The synthetic classes need time: order-free features are at chance on the pair distinction,
motion features separate the pairs, and reversing a video maps it to its pair class."""
import numpy as np
import pytest
import cv2

from dist_train.data.lists import read_class_ind, read_ucf_split
from dist_train.data.readers import decode_video
from dist_train.data.prepare.synthetic import make_synthetic

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


def order_free_features(frames):
    """Mean frame (8x6) and per-channel colour histograms: blind to frame order."""
    mean = cv2.resize(frames.mean(0).astype(np.float32), (8, 6), interpolation=cv2.INTER_AREA)
    hist = [np.histogram(frames[..., c], bins=8, range=(0, 256))[0] / frames[..., c].size
            for c in range(3)]
    return np.concatenate([mean.ravel() / 255] + hist)


def motion_features(frames):
    """Brightness-constancy moments sum(I_t * flow-field . grad I) for translation along x and
    y, rotation and expansion about the moving region; they change sign when time reverses."""
    gray = np.stack([cv2.GaussianBlur(f, (5, 5), 1.5) for f in frames.astype(np.float32).mean(-1)])
    weight = gray.std(0) / gray.std(0).sum()
    yy, xx = np.mgrid[0:gray.shape[1], 0:gray.shape[2]].astype(np.float32)
    x, y = xx - (weight * xx).sum(), yy - (weight * yy).sum()
    moments, energy = np.zeros(4), 1e-6
    for a, b in zip(gray[:-1], gray[1:]):
        it, mid = b - a, (a + b) / 2
        ix, iy = cv2.Sobel(mid, cv2.CV_32F, 1, 0) / 8, cv2.Sobel(mid, cv2.CV_32F, 0, 1) / 8
        moments -= [(it * ix).sum(), (it * iy).sum(), (it * (x * iy - y * ix)).sum(),
                    (it * (x * ix + y * iy)).sum()]
        energy += (ix * ix + iy * iy).sum()
    return moments / energy


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("syn"))
    manifest = make_synthetic(out, num_classes=8, videos_per_class=24, seed=5, height=60,
                              width=80)
    classes = read_class_ind(f"{out}/ucfTrainTestlist/classInd.txt")
    pair_of = {c: p for p, pair in enumerate(manifest["pairs"]) for c in pair[:2]}
    reversed_class = {c: i == 1 for pair in manifest["pairs"] for i, c in enumerate(pair[:2])}
    data = {}
    for split in ("trainlist01", "testlist01"):
        rows = []
        for class_name, video in read_ucf_split(f"{out}/ucfTrainTestlist/{split}.txt", classes):
            frames = decode_video(f"{out}/UCF-101/{class_name}/{video}.avi")
            rows.append((frames, pair_of[class_name], reversed_class[class_name]))
        data[split] = rows
    return data


def nearest_centroid_pair_accuracy(videos, features, reverse_test=False):
    """Within each pair, classify forward vs reversed by the nearer class centroid."""
    train = [(features(f), p, r) for f, p, r in videos["trainlist01"]]
    x = np.array([t[0] for t in train])
    mu, sd = x.mean(0), x.std(0) + 1e-9
    correct = 0
    for frames, pair, is_reversed in videos["testlist01"]:
        v = (features(frames[::-1] if reverse_test else frames) - mu) / sd
        centroids = [np.mean([(t[0] - mu) / sd for t in train if t[1] == pair and t[2] == r], 0)
                     for r in (False, True)]
        predicted = bool(np.linalg.norm(v - centroids[1]) < np.linalg.norm(v - centroids[0]))
        correct += predicted == is_reversed
    return correct / len(videos["testlist01"])


def test_order_free_features_are_near_chance(videos):
    assert len(videos["testlist01"]) == 64
    assert 0.3 <= nearest_centroid_pair_accuracy(videos, order_free_features) <= 0.7


def test_motion_separates_pairs_and_reversal_maps_to_pair_class(videos):
    assert nearest_centroid_pair_accuracy(videos, motion_features) >= 0.85
    # Reversed test videos are classified as the other class of their pair.
    assert nearest_centroid_pair_accuracy(videos, motion_features, reverse_test=True) <= 0.15


def test_reversal_is_exact_on_features(videos):
    frames = videos["testlist01"][0][0]
    assert np.allclose(motion_features(frames[::-1]), -motion_features(frames), atol=1e-6)
    assert np.allclose(order_free_features(frames[::-1]), order_free_features(frames))
