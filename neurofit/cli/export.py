"""``neurofit export sensorium``: write store recordings as SENSORIUM FileTrees, the layout the competitions
released (atomic: nothing appears at ``--out`` until every tree is complete)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export sensorium``."""
    parser = sub.add_parser("export", help="write store recordings in a released format (SENSORIUM FileTrees)")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="FORMAT")

    sens = kinds.add_parser(
        "sensorium", help="SENSORIUM 2023 (video recordings) or 2022 (image recordings) FileTree folders",
        description="Video recordings are written in the SENSORIUM 2023 layout, every trial file NaN-padded to "
                    "one length; image recordings in the SENSORIUM 2022 layout. Responses of tiers other than "
                    "train/validation/oracle are withheld (NaN), as released.")
    sens.add_argument("store", metavar="STORE", help="neurofit zarr store")
    sens.add_argument("--recording", metavar="NAME",
                      help="export this recording as the tree DIR itself (default: every recording, each in "
                           "DIR/NAME)")
    sens.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist, or be empty)")
    sens.add_argument("--pad-to", type=int, metavar="T",
                      help="frames of every video trial file (default: the store's frame count)")
    sens.set_defaults(handler=_run_sensorium)


def _run_sensorium(args: argparse.Namespace) -> int:
    from neurofit.data.sources.sensorium_writer import write_sensorium_tree, write_sensorium_trees

    if args.recording is None:
        trees = write_sensorium_trees(args.store, args.out, args.pad_to)
    else:
        trees = [write_sensorium_tree(args.store, args.recording, args.out, args.pad_to)]
    for tree in trees:
        print(f"wrote {tree}")
    return 0
