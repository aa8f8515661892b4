"""``neurofit simulate v1|regions``: write simulated recordings with planted ground truth to a store."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``simulate v1`` and ``simulate regions``."""
    parser = sub.add_parser("simulate", help="write a simulated dataset with ground truth to a zarr store")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")

    v1 = kinds.add_parser("v1", help="mouse-V1 digital twin: images (or --video movies) and responses")
    v1.add_argument("--out", required=True, help="output store, e.g. DATA.zarr")
    v1.add_argument("--recordings", type=int, default=2, help="number of recordings (mice)")
    v1.add_argument("--neurons", type=int, default=300, help="neurons per recording")
    v1.add_argument("--video", action="store_true", help="drifting 1/f movies at 30 Hz, responses per frame")
    v1.add_argument("--seed", type=int, default=0)
    # The names are neurofit.data.simulate.v1_params.PRESETS (not imported here: it loads the data layer).
    v1.add_argument("--preset", choices=("calibrated", "calibrated-noise-free-coupling", "high-snr"),
                    default="calibrated",
                    help="statistics: calibrated to SENSORIUM 2022 noise and reliability, private fluctuations "
                         "passing through the coupling (default); calibrated-noise-free-coupling, the default "
                         "before issue #22 (coupling acts on noise-free drives only); or high-snr, the far less "
                         "noisy defaults before issue #17 (datasets/simulated_v1.md)")
    v1.add_argument("--coupling", choices=("distance", "tuning"), default=None,
                    help="planted lateral coupling: distance (dense, excitatory centre and inhibitory surround; "
                         "the default) or tuning (sparse, positive, like-to-like by orientation preference, "
                         "independent of cortical distance)")
    v1.add_argument("--private-fluctuations", action="store_true",
                    help="the drive's trial-to-trial fluctuations act after the coupling, so they do not spread "
                         "to coupled neurons (default: they pass through it)")
    v1.add_argument("--overwrite", action="store_true", help="replace an existing store")
    v1.set_defaults(handler=_run_v1)

    regions = kinds.add_parser("regions", help="multi-region RNN with known inter-region currents")
    regions.add_argument("--out", required=True, help="output store, e.g. REGIONS.zarr")
    # The names are neurofit.data.simulate.regions.PRESETS (not imported here: it loads the data layer).
    regions.add_argument("--preset", choices=("default", "curbd"), default="default",
                         help="default: random sparse projections, inputs recorded; curbd: CURBD's threeRegionSim "
                              "(one-to-one links, sequence and fixed-point drivers kept in the truth only)")
    regions.add_argument("--units", type=int, default=300, help="total units, split over three regions")
    regions.add_argument("--trials", type=int, default=1, help="trials, each from a new random initial state")
    regions.add_argument("--amp-inter-region", type=float,
                         help="curbd: weight of every inter-region link (ampInterReg; 0.02 as curbd.py, 0.2 as "
                              "the MATLAB original)")
    regions.add_argument("--record-inputs", action="store_true",
                         help="curbd: also give the recording the outside inputs (the reference's fit is not "
                              "given them)")
    regions.add_argument("--seed", type=int, default=0)
    regions.add_argument("--overwrite", action="store_true", help="replace an existing store")
    regions.set_defaults(handler=_run_regions)


def _run_v1(args: argparse.Namespace) -> int:
    from neurofit.data.simulate.v1 import simulate_v1_store

    overrides = {} if args.coupling is None else {"coupling_structure": args.coupling}
    if args.private_fluctuations:
        overrides["fluctuation_through_coupling"] = False
    path = simulate_v1_store(args.out, recordings=args.recordings, neurons=args.neurons, video=args.video,
                             seed=args.seed, preset=args.preset, overwrite=args.overwrite, **overrides)
    print(f"wrote {path}")
    return 0


def _run_regions(args: argparse.Namespace) -> int:
    from neurofit.data.simulate.regions import simulate_regions_store

    path = simulate_regions_store(args.out, preset=args.preset, seed=args.seed, units=args.units,
                                  trials=args.trials, amp_inter_region=args.amp_inter_region,
                                  record_inputs=args.record_inputs, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0
