"""Build clip lists '<path> <num_frames> <label>' for training and evaluation.

--dataset ucf101 | hmdb51: from the official split files and extracted frames; writes
  OUT/<dataset>_train_split<N>.txt and OUT/<dataset>_val_split<N>.txt (the split's test list
  serves as validation, as in the paper); class names are the frame folders.
--dataset kinetics: from the official annotation CSVs (400/600/700) and a folder of clips
  (--videos) or of their extracted frames (--frames), flat or one folder per label (any names);
  clips are matched by youtube_id and times. Writes OUT/<name>_{train,val}.txt, the test split
  without labels as OUT/<name>_test.txt (paths only, for prediction), OUT/classes.txt and
  OUT/<name>_report.json naming every missing clip; more than --max-missing missing is an error.
--dataset folders: a user's own ROOT/<class>/<clip> (videos or frame folders); a train/val split
  that keeps the clips of one source together (UCF-101 gXX, Kinetics youtube_id or
  --group-regex). Writes OUT/<name>_{train,val}.txt, OUT/classes.txt, OUT/<name>_report.json.
"""
import argparse
import os
import shlex
import sys

from dist_train.data.lists import (DataError, build_split_lists, list_file_names, write_generated_lists,
                                   write_list)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("ucf101", "hmdb51", "kinetics", "folders"),
                        default="ucf101")
    parser.add_argument("--out", required=True, help="folder for the list files")
    parser.add_argument("--frames", help="frame root (<Class>/<video>/img_*.jpg for ucf101/hmdb51)")
    parser.add_argument("--videos", help="video root (kinetics, folders)")
    parser.add_argument("--template", default="img_{:05d}.jpg")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes counting the frames of videos (kinetics, folders)")
    official = parser.add_argument_group("ucf101 / hmdb51")
    official.add_argument("--splits", help="split folder (ucfTrainTestlist or HMDB-51 "
                          "testTrainMulti_7030_splits)")
    official.add_argument("--split", type=int, choices=(1, 2, 3), default=1)
    official.add_argument("--allow-missing", action="store_true",
                          help="leave out videos without usable frames and report their count")
    kinetics = parser.add_argument_group("kinetics")
    kinetics.add_argument("--csv", nargs="+", help="annotation CSV file(s): train, validate, test")
    kinetics.add_argument("--max-missing", type=float, default=0.2,
                          help="error when a split misses more than this fraction of its clips "
                               "(default 0.2)")
    own = parser.add_argument_group("folders")
    own.add_argument("--val-fraction", type=float, default=0.2)
    own.add_argument("--group-regex", default=None,
                     help="regular expression on the clip name (no extension) whose first group "
                          "(or whole match) names the clip's source")
    own.add_argument("--seed", type=int, default=0, help="changes which groups go to validation")
    parser.add_argument("--name", default=None,
                        help="list file prefix (kinetics, folders; default: the dataset)")
    args = parser.parse_args(argv)
    if args.dataset in ("ucf101", "hmdb51"):
        missing = [flag for flag, value in (("--frames", args.frames), ("--splits", args.splits))
                   if not value]
    else:
        missing = [] if bool(args.frames) != bool(args.videos) else ["exactly one of --videos, --frames"]
        if args.dataset == "kinetics" and not args.csv:
            missing.append("--csv")
    if missing:
        parser.error(f"--dataset {args.dataset} needs {', '.join(missing)}")
    if not 0 <= args.max_missing <= 1:
        parser.error("--max-missing must be a fraction in [0, 1]")
    return args


def official_lists(args):
    train, val, classes, problems = build_split_lists(
        args.frames, args.splits, args.split, args.dataset, args.template, args.allow_missing)
    train_name, val_name = list_file_names(args.dataset, args.split)
    write_list(os.path.join(args.out, train_name), train)
    write_list(os.path.join(args.out, val_name), val)
    print(f"{len(classes)} classes; {len(train)} train and {len(val)} val videos -> {args.out}")
    if problems:
        print(f"{len(problems)} video(s) left out (missing or incomplete frames):")
        for problem in problems[:20]:
            print(f"  {problem}")


def generated_lists(args):
    from dist_train.data.prepare.kinetics import build_kinetics_lists
    from dist_train.data.prepare.own_folders import build_folder_lists

    kind, root = ("video", args.videos) if args.videos else ("frames", args.frames)
    if args.dataset == "kinetics":
        generated = build_kinetics_lists(args.csv, root, kind, args.template, args.workers)
    else:
        generated = build_folder_lists(root, kind, args.template, args.val_fraction,
                                       args.group_regex, args.seed, args.workers)
    written = write_generated_lists(args.out, args.name or args.dataset, generated,
                                    args.max_missing)
    splits = generated.report["splits"]
    print(f"{len(generated.classes)} classes -> {written['classes']}")
    for split in sorted(splits):
        s = splits[split]
        labels = "" if split in generated.lists else " (no labels: prediction only)"
        print(f"{split}: {s['listed']} clips listed, {s['missing']} missing -> "
              f"{written.get(split, 'no file (empty)')}{labels}")
    print(f"report: {written['report']}")
    overrides = [f"data.root={os.path.abspath(root)}", f"data.source={kind}"]
    overrides += ["data.video_ext="] if kind == "video" else [f"data.frame_template={args.template}"]
    overrides += [f"data.{split}_list={written[split]}" for split in ("train", "val")
                  if split in generated.lists and split in written]
    overrides.append(f"model.num_classes={len(generated.classes)}")
    print("train with: " + " ".join(f"-o {shlex.quote(o)}" for o in overrides))


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.dataset in ("ucf101", "hmdb51"):
            official_lists(args)
        else:
            generated_lists(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
