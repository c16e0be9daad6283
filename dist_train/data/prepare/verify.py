"""Dataset doctor: check clip lists against the frame folders.

Checks: every listed video has frames; the frame numbering has no gaps and matches the list's
frame count; every JPEG is non-empty and decodes (optional, the slow part); labels lie in
0..num_classes-1 and each class name maps to one label and back; no video is listed twice,
nor in two different lists (a train/val leak). Each problem names the file (and list line).
"""
import multiprocessing
import os

import cv2

from dist_train.data.lists import count_video_frames, read_list_numbered


def _check_images(args):
    folder, template, num_frames = args
    problems = []
    for n in range(1, num_frames + 1):
        path = os.path.join(folder, template.format(n))
        if not os.path.exists(path):
            continue  # a missing frame is reported by the numbering check
        if os.path.getsize(path) == 0:
            problems.append(f"{path}: empty file")
        elif cv2.imread(path, cv2.IMREAD_COLOR) is None:
            problems.append(f"{path}: unreadable image")
    return problems


def verify_dataset(frames_root, list_paths, template="img_{:05d}.jpg", num_classes=None,
                   decode=True, workers=1):
    """Return {'videos': n, 'lists': [...], 'problems': [str, ...]} (empty problems = healthy)."""
    problems, seen, class_label, label_class, labels = [], {}, {}, {}, set()
    image_jobs, total = [], 0
    unique_paths = list(dict.fromkeys(os.path.abspath(p) for p in list_paths))
    for list_path in unique_paths:
        for line, entry in read_list_numbered(list_path):
            total += 1
            where = f"{list_path}:{line}"
            if entry.video in seen:
                problems.append(f"{where}: {entry.video} duplicates {seen[entry.video]}")
            seen.setdefault(entry.video, where)
            class_name, in_folder, _ = entry.video.partition("/")
            labels.add(entry.label)
            if in_folder:  # flat layouts (Kinetics) name classes only in their class index
                if class_label.setdefault(class_name, entry.label) != entry.label:
                    problems.append(f"{where}: class {class_name} has label {entry.label}, "
                                    f"elsewhere {class_label[class_name]}")
                if label_class.setdefault(entry.label, class_name) != class_name:
                    problems.append(f"{where}: label {entry.label} is used by {class_name} and "
                                    f"{label_class[entry.label]}")
            if num_classes is not None and not 0 <= entry.label < num_classes:
                problems.append(f"{where}: label {entry.label} outside 0..{num_classes - 1}")
            on_disk, problem = count_video_frames(frames_root, entry.video, template)
            folder = os.path.join(frames_root, entry.video)
            if problem:
                problems.append(f"{folder}: {problem}")
            if on_disk and on_disk != entry.num_frames:
                problems.append(f"{where}: list says {entry.num_frames} frames, {folder} has "
                                f"{on_disk}")
            if decode and on_disk:
                image_jobs.append((folder, template, on_disk))
    if num_classes is None and labels:
        ordered = sorted(labels)
        if ordered != list(range(len(ordered))):
            problems.append(f"labels are not 0..{len(ordered) - 1} without gaps: "
                            f"missing {sorted(set(range(ordered[-1] + 1)) - labels)}")
    if image_jobs:
        if workers > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                results = pool.map(_check_images, image_jobs, chunksize=4)
        else:
            results = map(_check_images, image_jobs)
        for found in results:
            problems.extend(found)
    return {"videos": total, "lists": unique_paths, "classes": len(labels),
            "problems": problems}
