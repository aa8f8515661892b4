"""``neurofit insilico RUN``: MEIs, in-silico receptive fields and grating tuning of a fitted encoder, scored
against the planted truth of simulated data, next to the untrained model."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``insilico``."""
    from neurofit.analysis.insilico.settings import Settings

    settings = Settings()
    probe, mei, tuning = settings.probe, settings.mei, settings.tuning
    parser = sub.add_parser("insilico", help="MEIs, in-silico RFs and tuning curves; writes RUN/insilico/")
    parser.add_argument("run", help="run directory of a fitted encoder")
    parser.add_argument("--recording", default=None, help="one recording (default: all of the run's)")
    parser.add_argument("--neurons", nargs="+", default=None, metavar="UNIT_ID",
                        help="unit ids to analyse (default: every neuron)")
    parser.add_argument("--data", default=None, help="store (default: the one the run was fit on)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"), help="the trained model")
    parser.add_argument("--no-untrained", dest="untrained", action="store_false",
                        help="skip the same experiments on the model as training started (checkpoints/init.ckpt)")
    parser.add_argument("--starts", type=int, default=mei.starts, help="MEI random starts per neuron")
    parser.add_argument("--iterations", type=int, default=mei.iterations, help="MEI gradient steps")
    parser.add_argument("--step-size", type=float, default=mei.step_size,
                        help="first MEI step as a fraction of the norm (cosine decay to 0)")
    parser.add_argument("--norm", type=float, default=None,
                        help="L2 norm of the MEI contrast, grey levels (default: a typical training image's "
                             "contrast energy within a 16 px disc)")
    parser.add_argument("--blur-sigma", type=float, default=mei.blur_sigma_px,
                        help="Gaussian blur of the MEI gradient, pixels (0: none)")
    parser.add_argument("--noise-images", type=int, default=settings.noise_images,
                        help="white-noise images for the STA")
    parser.add_argument("--train-images", type=int, default=settings.train_images,
                        help="training images for the reference rates")
    parser.add_argument("--orientations", type=int, default=tuning.orientations)
    parser.add_argument("--phases", type=int, default=probe.phases,
                        help="phases per still grating (static models)")
    parser.add_argument("--spatial-frequencies", type=float, nargs="+", default=list(tuning.spatial_frequencies),
                        metavar="CPP", help="grating frequencies, cycles/pixel")
    parser.add_argument("--sizes", type=float, nargs="+", default=list(tuning.sizes_px), metavar="PX",
                        help="window diameters of the size tuning, pixels (ascending)")
    parser.add_argument("--temporal-frequencies", type=float, nargs="+", default=list(probe.temporal_frequencies),
                        metavar="HZ", help="drift frequencies (video models)")
    parser.add_argument("--batch-size", type=int, default=probe.batch_size, help="model frames per call")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_insilico)


def _check(args: argparse.Namespace) -> None:
    """Refuse out-of-range options, naming the option."""
    from neurofit.errors import ConfigError

    rules = [("--starts", args.starts, args.starts >= 1, ">= 1"),
             ("--iterations", args.iterations, args.iterations >= 1, ">= 1"),
             ("--step-size", args.step_size, args.step_size > 0, "> 0"),
             ("--norm", args.norm, args.norm is None or args.norm > 0, "> 0"),
             ("--blur-sigma", args.blur_sigma, args.blur_sigma >= 0, ">= 0"),
             ("--noise-images", args.noise_images, args.noise_images >= 2, ">= 2"),
             ("--train-images", args.train_images, args.train_images >= 1, ">= 1"),
             ("--orientations", args.orientations, args.orientations >= 2, ">= 2"),
             ("--phases", args.phases, args.phases >= 3, ">= 3 (F1 needs three phases)"),
             ("--spatial-frequencies", args.spatial_frequencies,
              all(0 < f <= 0.5 for f in args.spatial_frequencies), "in (0, 0.5] cycles/pixel"),
             ("--sizes", args.sizes, all(s > 0 for s in args.sizes) and args.sizes == sorted(args.sizes),
              "> 0 and ascending"),
             ("--temporal-frequencies", args.temporal_frequencies,
              all(f > 0 for f in args.temporal_frequencies), "> 0"),
             ("--batch-size", args.batch_size, args.batch_size >= 1, ">= 1")]
    for option, value, ok, rule in rules:
        if not ok:
            raise ConfigError(f"{option}: must be {rule}, got {value}")


def _insilico(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neurofit.analysis.insilico.outputs import read_summary, write_outputs
    from neurofit.analysis.insilico.pipeline import check_recording, insilico_recording, output_dir, select_neurons
    from neurofit.analysis.insilico.settings import MEISettings, ProbeSettings, Settings, TuningSettings
    from neurofit.errors import DataError
    from neurofit.io import check_output_location
    from neurofit.run import load_run, untrained_run

    _check(args)
    run = load_run(args.run, args.checkpoint)
    if run.encoder is None:
        raise DataError(f"{run.path}: in-silico experiments need an encoder run (config type: {run.config.type})")
    data = Path(args.data) if args.data else run.data_path
    names = [args.recording] if args.recording else list(run.specs)
    for name in names:
        check_recording(run, data, name)
    neurons = {name: select_neurons(run, name, args.neurons) for name in names}
    out = check_output_location(output_dir(run))
    read_summary(out)
    models = {"trained": run}
    if args.untrained:
        init = run.path / "checkpoints" / "init.ckpt"
        if not init.is_file():
            raise DataError(f"{init}: missing (the untrained reference); pass --no-untrained to skip it")
        models["untrained"] = untrained_run(run)
    settings = Settings(
        probe=ProbeSettings(phases=args.phases, batch_size=args.batch_size,
                            temporal_frequencies=tuple(args.temporal_frequencies)),
        mei=MEISettings(starts=args.starts, iterations=args.iterations, step_size=args.step_size,
                        blur_sigma_px=args.blur_sigma, norm=args.norm, seed=args.seed),
        tuning=TuningSettings(orientations=args.orientations, spatial_frequencies=tuple(args.spatial_frequencies),
                              sizes_px=tuple(args.sizes)),
        noise_images=args.noise_images, train_images=args.train_images)
    results = [insilico_recording(models, data, name, neurons[name], settings, args.seed)
               for name in names]
    write_outputs(out, results)
    for result in results:
        print(f"{result.name}: {json.dumps(_brief(result.entry))}")
    print(f"wrote {out}")
    return 0


def _brief(entry: dict) -> dict:
    """The headline numbers for the terminal: the targets where there is a truth, else MEI activations and
    the fraction of simple calls, trained and untrained."""
    if "targets" in entry:
        return entry["targets"]
    keys = ("mei_activation", "f1_f0")
    return {key: {label: entry["metrics"][key][label]["all"] for label in entry["metrics"][key]
                  if label != "description"} for key in keys}
