"""Plan, shard fragments and the merge of the compressed clip store (layout in
``data/jpeg_store.py``; preparation in ``jpeg_store.py`` beside this module).

- The plan (``prepare_plan.json``): the settings and the sorted videos cut into shards of
  ``videos_per_shard``. Every run and part of a store must carry the same plan, so resumed runs,
  N machines and a one-shot run all write the same shards.
- A fragment (``shard_NNNNN.json``) is written after its shard file is complete: the frame sizes
  of every prepared video and the failures. A shard is done when its fragment exists and the
  shard file has the size the fragment records.
- ``merge_store`` moves the shards of part directories in (if any) and writes the one index from
  the plan and the fragments only, so merged parts equal a one-shot run byte for byte.
"""
import io
import json
import os

import numpy as np

from dist_train.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from dist_train.data.jpeg_store import (COLUMNS, FORMAT, FRAME_ENDS, INDEX_NAME, VERSION,
                                        VIDEO_NAMES, VIDEO_TABLE, shard_name)
from dist_train.data.lists import DataError
from dist_train.data.store import StoreError

PLAN_NAME = "prepare_plan.json"


# ----------------------------------------------------------------------------- fragments

def fragment_name(number):
    return f"shard_{number:05d}.json"


def read_fragment(store_dir, number):
    """The fragment of a shard if the shard is complete (fragment and matching shard file)."""
    path = os.path.join(store_dir, fragment_name(number))
    try:
        with open(path, encoding="utf-8") as f:
            fragment = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(f"{path}: unreadable fragment ({error}); delete it to redo its "
                         f"shard") from error
    shard = os.path.join(store_dir, shard_name(number))
    if not os.path.isfile(shard) or os.path.getsize(shard) != fragment["size"]:
        return None  # the shard was replaced or lost: redo it
    return fragment


# ----------------------------------------------------------------------------- plan

def make_plan(videos, settings):
    per_shard = settings["videos_per_shard"]
    shards = [videos[k:k + per_shard] for k in range(0, len(videos), per_shard)]
    return {"format": FORMAT + ".plan", "version": VERSION, "settings": settings,
            "shards": shards}


def load_or_write_plan(store_dir, plan):
    """The store's plan: written if absent, else it must equal ``plan``."""
    path = os.path.join(store_dir, PLAN_NAME)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            existing = json.load(f)
        if existing != plan:
            what = ("settings" if existing.get("settings") != plan["settings"]
                    else "list of videos")
            raise StoreError(f"{path}: this store was planned with another {what} (existing "
                             f"settings {existing.get('settings')}); use another --out "
                             f"directory, or delete this one to start over")
        return existing
    os.makedirs(store_dir, exist_ok=True)
    atomic_write_text(path, json.dumps(plan, sort_keys=True))
    return plan


def read_plan(store_dir):
    path = os.path.join(store_dir, PLAN_NAME)
    if not os.path.isfile(path):
        raise StoreError(f"{path}: missing: {store_dir} holds no prepared shards (to merge "
                         f"parts prepared in other directories, name them with --parts)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def parse_part(text):
    """'K/N' -> (K, N) with 1 <= K <= N."""
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise DataError(f"--shard {text!r}: expected K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise DataError(f"--shard {text!r}: K must be between 1 and N")
    return k, n


# ----------------------------------------------------------------------------- merge

def _move_in(part_dir, store_dir, number):
    for name in (shard_name(number), fragment_name(number)):  # fragment last: it marks done
        source, target = os.path.join(part_dir, name), os.path.join(store_dir, name)
        try:
            os.replace(source, target)
        except OSError:  # another file system: copy atomically, then drop the source
            with open(source, "rb") as src, atomic_open(target) as dst:
                while True:
                    block = src.read(1 << 24)
                    if not block:
                        break
                    dst.write(block)
            os.remove(source)


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def merge_store(store_dir, part_dirs=(), log=print):
    """Bring the shards of ``part_dirs`` into ``store_dir`` (moved) and write the one index.

    Every part must carry the same plan; every planned shard must be complete. Returns a
    summary dict (videos, frames, bytes, failed videos).
    """
    plan = read_plan(part_dirs[0]) if part_dirs and not os.path.isfile(
        os.path.join(store_dir, PLAN_NAME)) else read_plan(store_dir)
    load_or_write_plan(store_dir, plan)
    for part_dir in part_dirs:
        if os.path.abspath(part_dir) == os.path.abspath(store_dir):
            continue
        if read_plan(part_dir) != plan:
            raise StoreError(f"{os.path.join(part_dir, PLAN_NAME)}: this part was planned with "
                             f"other settings or videos than {store_dir}; it cannot be merged")
        for s in range(len(plan["shards"])):
            if read_fragment(part_dir, s) is not None:
                _move_in(part_dir, store_dir, s)
    fragments = [read_fragment(store_dir, s) for s in range(len(plan["shards"]))]
    missing = [s for s, fragment in enumerate(fragments) if fragment is None]
    if missing:
        raise StoreError(f"{store_dir}: shard(s) {missing[:20]} of {len(fragments)} are not "
                         f"prepared; run the parts that own them (shard s belongs to part "
                         f"K/N with K - 1 = s mod N), then merge again")
    names, rows, ends, failed, frame_row = [], [], [], {}, 0
    for s, fragment in enumerate(fragments):
        failed.update(fragment["failed"])
        for entry in fragment["videos"]:
            sizes = np.asarray(entry["frame_sizes"], np.int64)
            rows.append((s, entry["offset"], frame_row, len(sizes), entry["height"],
                         entry["width"]))
            names.append(entry["video"])
            ends.append(np.cumsum(sizes).astype(np.uint32))
            frame_row += len(sizes)
    table = np.asarray(rows, np.int64).reshape(-1, len(COLUMNS))
    frame_ends = np.concatenate(ends) if ends else np.zeros(0, np.uint32)
    settings = plan["settings"]
    index = {"format": FORMAT, "version": VERSION, "settings": settings,
             "shards": {shard_name(s): f["size"] for s, f in enumerate(fragments)},
             "num_videos": len(names), "num_frames": int(len(frame_ends))}
    atomic_write_text(os.path.join(store_dir, VIDEO_NAMES), json.dumps(names))
    atomic_write_bytes(os.path.join(store_dir, VIDEO_TABLE), _npy_bytes(table))
    atomic_write_bytes(os.path.join(store_dir, FRAME_ENDS), _npy_bytes(frame_ends))
    atomic_write_text(os.path.join(store_dir, INDEX_NAME), json.dumps(index, sort_keys=True))
    total = sum(index["shards"].values())
    report = {"store": os.path.abspath(store_dir), "settings": settings,
              "videos": len(names), "frames": int(len(frame_ends)), "store_bytes": total,
              "bytes_per_frame": round(total / max(len(frame_ends), 1), 1),
              "failed_count": len(failed),
              "failed": [{"video": v, "error": e} for v, e in sorted(failed.items())]}
    atomic_write_text(os.path.join(store_dir, "merge_report.json"), json.dumps(report, indent=1))
    log(f"merged {len(fragments)} shards: {len(names)} videos, {len(frame_ends)} frames, "
        f"{total / 1e9:.3f} GB ({report['bytes_per_frame']:.0f} bytes per frame), "
        f"{len(failed)} failed")
    return report
