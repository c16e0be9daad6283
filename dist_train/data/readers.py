"""Clip readers: frame folders (JPEG) and raw videos (OpenCV).

``read`` returns the requested 0-based frame indices as one uint8 RGB array ``[T, H, W, 3]``;
``read_frames`` returns them as a list of ``[H, W, 3]`` arrays, not stacked: the datasets use it,
because the transforms cut every frame separately anyway and stacking 16 decoded 320x240
frames costs about 10% of a JPEG clip's time on one core. JPEG frames are decoded into reused
buffers (OpenCV >= 4.10): a fresh array per frame cost ~15% more.
Repeated indices (loop padding) are decoded once. A frame or video that cannot be read raises
``BadSampleError`` naming the path. Raw videos are decoded sequentially and the decoded frames
are counted: the container's frame count is never trusted (it can be wrong or garbage).
"""
import os
import re
import string
import threading

import cv2
import numpy as np

DEFAULT_FRAME_TEMPLATE = "img_{:05d}.jpg"

# OpenCV's internal thread pool does not survive fork(): a forked DataLoader or extraction worker
# that calls cv2 after the parent used it can hang forever. Parallelism comes from processes
# here, so keep OpenCV single-threaded in every process that imports the data package.
cv2.setNumThreads(1)


class BadSampleError(RuntimeError):
    """A frame or video could not be read; ``path`` names the file."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = path


def frame_name_regex(template):
    """'img_{:05d}.jpg' -> regex matching names made by the template, capturing the number."""
    fields = [(literal, field) for literal, field, _, _ in string.Formatter().parse(template)]
    if len([f for _, f in fields if f is not None]) != 1:
        raise ValueError(f"data.frame_template {template!r} must have exactly one '{{}}' field")
    prefix = fields[0][0]
    suffix = "".join(literal for literal, _ in fields[1:])
    return re.compile("^" + re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")


def scan_frame_numbers(folder, template=DEFAULT_FRAME_TEMPLATE):
    """Sorted 1-based frame numbers present in ``folder`` (files matching the template)."""
    pattern = frame_name_regex(template)
    numbers = []
    for name in os.listdir(folder):
        m = pattern.match(name)
        if m and template.format(int(m.group(1))) == name:
            numbers.append(int(m.group(1)))
    return sorted(numbers)


# OpenCV >= 4.10 decodes straight to RGB (bit-identical to BGR + cvtColor, one pass less), and
# into a caller's buffer: imread(filename, dst, flags).
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_DECODES_INTO = _IMREAD_RGB is not None and \
    tuple(int(v) for v in re.findall(r"\d+", cv2.__version__)[:2]) >= (4, 10)
# imread into a buffer returns the buffer even when it decoded nothing or only part (missing or
# damaged file): corner pixels set beforehand, either still there afterwards, send the frame
# through the plain imread, which says whether it really fails (a real frame with such a
# corner merely takes the slow path).
_CANARY_FIRST, _CANARY_LAST = (1, 254, 3), (253, 2, 251)


def read_rgb_image(path, out=None):
    """One image file as uint8 RGB [H, W, 3] (grey images are expanded to three channels).

    With ``out`` (a C-contiguous uint8 [H, W, 3] buffer) the image is decoded into it and
    ``out`` itself is returned when its size matches (no allocation per frame); otherwise a new
    array.
    """
    if out is not None and _DECODES_INTO:
        out[0, 0], out[-1, -1] = _CANARY_FIRST, _CANARY_LAST
        try:
            cv2.imread(path, out, _IMREAD_RGB)
            fits = True
        except cv2.error:  # an image of another size: the plain path below decodes it
            fits = False
        # Both corners must have changed: a decode that failed half-way wrote the top rows only.
        if fits and tuple(out[0, 0]) != _CANARY_FIRST and tuple(out[-1, -1]) != _CANARY_LAST:
            return out
    image = cv2.imread(path, cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB)
    if image is None:
        reason = "missing" if not os.path.exists(path) else "unreadable or empty image"
        raise BadSampleError(path, reason)
    return image if _IMREAD_RGB is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _in_order(frames_by_index, indices, path):
    """The decoded frames in the order of ``indices`` (repeats share one array)."""
    shapes = {f.shape for f in frames_by_index.values()}
    if len(shapes) != 1:
        raise BadSampleError(path, f"frames of different sizes {sorted(shapes)}")
    return [frames_by_index[i] for i in indices]


class FrameFolderReader:
    """Frames at ``<root>/<Class>/<video>/<template.format(index + 1)>``.

    ``read_frames`` decodes into a per-thread buffer of this reader, sized by the previous
    clip: its frames stay valid until the next ``read_frames`` call in the same thread (the
    datasets transform them at once). ``read`` returns a new array.
    """

    def __init__(self, root, template=DEFAULT_FRAME_TEMPLATE):
        self.root = root
        self.template = template
        frame_name_regex(template)  # validate early
        self._local = threading.local()

    def __getstate__(self):  # picklable: the buffers stay behind
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state):
        self.__dict__.update(state, _local=threading.local())

    def frame_path(self, video, index):
        return os.path.join(self.root, video, self.template.format(index + 1))

    def read_frames(self, video, indices):
        folder = os.path.join(self.root, video, "")  # joined once per clip, not per frame
        unique = sorted(set(indices))
        pool = getattr(self._local, "frames", None)
        if pool is not None and len(pool) < len(unique):
            pool = self._local.frames = np.empty((len(unique),) + pool.shape[1:], np.uint8)
        frames = {}
        for j, i in enumerate(unique):
            slot = None if pool is None else pool[j]
            image = frames[i] = read_rgb_image(folder + self.template.format(i + 1), slot)
            if j == 0 and image is not slot:  # the first clip, or frames of a new size
                pool = self._local.frames = np.empty((len(unique),) + image.shape, np.uint8)
        return _in_order(frames, indices, folder.rstrip(os.sep))

    def read(self, video, indices):
        unique = sorted(set(indices))
        first = read_rgb_image(self.frame_path(video, unique[0]))
        stacked = np.empty((len(unique),) + first.shape, np.uint8)
        stacked[0] = first
        for j, i in enumerate(unique[1:], start=1):
            slot = stacked[j]
            image = read_rgb_image(self.frame_path(video, i), slot)
            if image is not slot and image.shape == first.shape:  # decoded by the plain path
                slot[...] = image
            elif image is not slot:
                raise BadSampleError(os.path.join(self.root, video), "frames of different sizes "
                                     f"{sorted({first.shape, image.shape})}")
        position = {i: j for j, i in enumerate(unique)}
        return stacked if unique == list(indices) else stacked[[position[i] for i in indices]]


def open_video(path):
    if not os.path.isfile(path):
        raise BadSampleError(path, "missing video file")
    if os.path.getsize(path) == 0:
        raise BadSampleError(path, "empty (zero-byte) video file")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise BadSampleError(path, "OpenCV cannot open the video")
    return capture


def decode_video(path):
    """All decodable frames of a video as uint8 RGB [N, H, W, 3] (N counted, not declared)."""
    capture = open_video(path)
    frames = []
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise BadSampleError(path, "no decodable frames")
    return np.stack(frames)


def declared_frame_count(path):
    """The container's claimed frame count (may be wrong; used only to detect damage)."""
    capture = open_video(path)
    try:
        return capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()


def count_decoded_frames(path):
    capture = open_video(path)
    count = 0
    try:
        while capture.grab():
            count += 1
    finally:
        capture.release()
    return count


class _OpenVideo:
    """A capture of ``path`` whose next ``grab()`` decodes frame ``next_index`` (0-based)."""

    def __init__(self, path):
        self.capture = open_video(path)
        self.path, self.file, self.pid = path, _file_identity(path), os.getpid()
        self.next_index = 0

    def continues(self, path, first):
        """True if a read of ``path`` from frame ``first`` can go on from here: same file (not
        rewritten since), same process (a forked copy shares the parent's file offset), not
        yet past ``first``."""
        return (self.pid == os.getpid() and self.path == path and self.next_index <= first
                and self.file == _file_identity(path))


def _file_identity(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class VideoReader:
    """Raw videos at ``<root>/<Class>/<video><ext>``, decoded sequentially from frame 0.

    The last video read stays open (per thread and process): a read of the same file that
    starts at or after the frame where the previous read stopped goes on decoding from there
    instead of from frame 0. Evaluation reads a video's clips in order, so it decodes each video
    once (linear in its frames, not quadratic); any other read reopens the file. Frames before
    the first wanted one are only grabbed (decoded, not converted).
    """

    sequential = True  # reads are cheapest in frame order within a video (evaluation uses it)

    def __init__(self, root, ext=".avi"):
        self.root = root
        self.ext = ext
        self._local = threading.local()

    def __getstate__(self):  # picklable: the open video stays behind
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state):
        self.__dict__.update(state, _local=threading.local())

    def video_path(self, video):
        return os.path.join(self.root, video + self.ext)

    def _open_at(self, path, first):
        opened = getattr(self._local, "video", None)
        if opened is not None and opened.continues(path, first):
            return opened
        self.close()
        opened = self._local.video = _OpenVideo(path)
        return opened

    def close(self):
        """Release this thread's open video, if any (reads reopen it as needed)."""
        opened, self._local.video = getattr(self._local, "video", None), None
        if opened is not None:
            opened.capture.release()  # in a forked child: only the child's copy

    def read_frames(self, video, indices):
        path = self.video_path(video)
        wanted = set(indices)
        first, last = min(wanted), max(wanted)
        opened = self._open_at(path, first)
        frames = {}
        try:
            while opened.next_index <= last:
                i = opened.next_index
                # grab() skips the conversion to BGR for frames we do not need.
                if not opened.capture.grab():
                    raise BadSampleError(path, f"only {i} frames decode, frame {last + 1} needed "
                                               f"(the list's frame count is too large?)")
                opened.next_index = i + 1
                if i in wanted:
                    ok, bgr = opened.capture.retrieve()
                    if not ok:
                        raise BadSampleError(path, f"frame {i + 1} does not decode")
                    frames[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        except BaseException:
            self.close()
            raise
        return _in_order(frames, indices, path)

    def read(self, video, indices):
        return np.stack(self.read_frames(video, indices))
