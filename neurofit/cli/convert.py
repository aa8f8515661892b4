"""``neurofit convert sensorium|nwb``: turn real recordings into a neurofit store (atomic, lossless)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``convert sensorium`` and ``convert nwb``."""
    parser = sub.add_parser("convert", help="convert real recordings (SENSORIUM FileTrees, NWB) to a zarr store")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="FORMAT")

    sens = kinds.add_parser(
        "sensorium", help="SENSORIUM 2022 (images) or 2023 (videos) FileTree folders or .zip archives",
        description="One recording per source, named after its folder (or zip stem); layout auto-detected.")
    sens.add_argument("sources", nargs="+", metavar="SRC", help="FileTree folder or its .zip")
    sens.add_argument("--out", required=True, help="output store, e.g. DATA.zarr")
    sens.add_argument("--overwrite", action="store_true", help="replace an existing store")
    sens.set_defaults(handler=_run_sensorium)

    nwb = kinds.add_parser(
        "nwb", help="two-photon NWB file: ophys responses aligned to stimulus presentations (needs pynwb)",
        description="Responses of a RoiResponseSeries (DfOverF or Fluorescence) averaged (or sampled) in a window "
                    "after each stimulus presentation.")
    nwb.add_argument("path", metavar="FILE.nwb")
    nwb.add_argument("--out", required=True, help="output store, e.g. DATA.zarr")
    nwb.add_argument("--window", nargs=2, type=float, metavar=("OFFSET_S", "DURATION_S"),
                     help="response window after each onset in seconds (default: 0 and the median "
                          "presentation duration)")
    nwb.add_argument("--frames", action="store_true",
                     help="keep the imaging samples of the window: responses (trial, frame, neuron)")
    nwb.add_argument("--series", help="RoiResponseSeries name (default: first in DfOverF, else Fluorescence)")
    nwb.add_argument("--stimulus", help="stimulus table (intervals) or series (stimulus) name")
    nwb.add_argument("--overwrite", action="store_true", help="replace an existing store")
    nwb.set_defaults(handler=_run_nwb)


def _run_sensorium(args: argparse.Namespace) -> int:
    from neurofit.data.sources.sensorium import convert_sensorium

    summaries = convert_sensorium(args.sources, args.out, overwrite=args.overwrite, progress=print)
    for s in summaries:
        if s.skipped:
            skipped = ", ".join(s.skipped)
            print(f"{s.name}: note: folders not converted (unknown to the SENSORIUM layout): {skipped}")
    print(f"wrote {args.out}")
    return 0


def _run_nwb(args: argparse.Namespace) -> int:
    from neurofit.data.sources.align import Window
    from neurofit.data.sources.nwb import convert_nwb

    offset, duration = args.window if args.window else (0.0, None)
    summary = convert_nwb(args.path, args.out, Window(offset, duration, args.frames), series=args.series,
                          stimulus=args.stimulus, overwrite=args.overwrite)
    shape = f"{summary['frames']} frames, " if args.frames else ""
    print(f"{summary['name']}: {summary['n_trials']} trials, {shape}{summary['n_neurons']} neurons "
          f"in {summary['seconds']:.1f} s")
    print(f"wrote {args.out}")
    return 0
