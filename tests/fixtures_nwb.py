"""Write small real two-photon NWB files with pynwb, shaped like the Allen Brain Observatory ones.

Imaging at 10 Hz for 60 s; 4 ROIs at known positions; natural-scene presentations in a TimeIntervals table
(``frame`` indexes a ``stimulus_template`` ImageSeries); running speed in processing module ``running``.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RATE_HZ = 10.0
N_SAMPLES = 600
#: ROI centres in pixels (x, y); with grid_spacing 2 um and origin (100, 200) um they sit at 100 + 2x, 200 + 2y.
CENTRES = ((3, 4), (10, 2), (6, 12), (14, 14))
FRAMES = np.array([0, 1, 2, 0, 1, 2, 3, 4, 0, 5, 6, 7, 0, 8, 9, 2, 1, 0, 3, 4], dtype=np.int64)
ONSETS = 2.0 + 2.5 * np.arange(len(FRAMES))
SHOWN_S = 0.5


def traces() -> np.ndarray:
    """(samples, roi) float32 dF/F with a distinct level per ROI and a ramp over time."""
    t = np.arange(N_SAMPLES)[:, None]
    return (0.01 * t + np.arange(1, 5)[None, :]).astype(np.float32)


def scenes() -> np.ndarray:
    """(10, 8, 12) uint8 template images."""
    return np.random.default_rng(0).integers(0, 256, (10, 8, 12)).astype(np.uint8)


def make_nwb(path: Path, mask_kind: str = "image_mask", grid: bool = True, ophys: bool = True,
             presentations: str = "table", running: bool = True) -> Path:
    """Write an NWB file; ``presentations`` is ``"table"`` (intervals + template) or ``"index"`` (IndexSeries)."""
    with warnings.catch_warnings():
        # hdmf warns when a series' ROI region is built before the series joins the file; the file is valid
        warnings.filterwarnings("ignore", message="The linked table for DynamicTableRegion")
        return _write_nwb(path, mask_kind, grid, ophys, presentations, running)


def _write_nwb(path: Path, mask_kind: str, grid: bool, ophys: bool, presentations: str, running: bool) -> Path:
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.base import ImageReferences, Images
    from pynwb.epoch import TimeIntervals
    from pynwb.image import GrayscaleImage, ImageSeries, IndexSeries
    from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel, RoiResponseSeries

    nwb = NWBFile(session_description="fixture", identifier=path.stem,
                  session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    device = nwb.create_device(name="2p")
    plane_kwargs = {"grid_spacing": [2e-6, 2e-6], "grid_spacing_unit": "meters", "origin_coords": [1e-4, 2e-4],
                    "origin_coords_unit": "meters"} if grid else {}
    plane = nwb.create_imaging_plane(
        name="plane", optical_channel=OpticalChannel(name="green", description="gcamp", emission_lambda=520.0),
        description="L2/3", device=device, excitation_lambda=920.0, imaging_rate=RATE_HZ, indicator="GCaMP6f",
        location="VISp", **plane_kwargs)
    if ophys:
        module = nwb.create_processing_module(name="ophys", description="ophys")
        seg = ImageSegmentation()
        module.add(seg)
        ps = seg.create_plane_segmentation(name="cells", description="rois", imaging_plane=plane)
        for k, (x, y) in enumerate(CENTRES):
            if mask_kind == "image_mask":
                mask = np.zeros((16, 16), dtype=np.float32)  # NWB orders image masks (x, y)
                mask[x - 1: x + 2, y - 1: y + 2] = 1.0
                ps.add_roi(image_mask=mask, id=100 + k)
            else:
                ps.add_roi(pixel_mask=[(x - 1, y, 1.0), (x + 1, y, 1.0), (x, y, 2.0)], id=100 + k)
        rois = ps.create_roi_table_region(region=list(range(len(CENTRES))), description="all")
        dff = DfOverF(name="DfOverF")
        dff.add_roi_response_series(RoiResponseSeries(name="dff", data=traces(), rois=rois, unit="1",
                                                      rate=RATE_HZ, starting_time=0.0))
        module.add(dff)
        fluo = Fluorescence(name="Fluorescence")
        fluo.add_roi_response_series(RoiResponseSeries(name="raw", data=traces() * 100, rois=rois, unit="a.u.",
                                                       rate=RATE_HZ, starting_time=0.0))
        module.add(fluo)
    if presentations == "table":
        template = ImageSeries(name="natural_scenes", data=scenes(), unit="NA", rate=1.0)
        nwb.add_stimulus_template(template)
        table = TimeIntervals(name="natural_scenes_presentations", description="scenes")
        table.add_column(name="frame", description="template index")
        for onset, frame in zip(ONSETS, FRAMES):
            table.add_interval(start_time=float(onset), stop_time=float(onset + SHOWN_S), frame=int(frame))
        nwb.add_time_intervals(table)
    else:
        pictures = [GrayscaleImage(name=f"scene{i:02d}", data=img) for i, img in enumerate(scenes())]
        images = Images(name="scene_images", images=pictures[::-1],  # stored out of order; the order is explicit
                        order_of_images=ImageReferences(name="order_of_images", data=pictures))
        nwb.add_stimulus_template(images)
        nwb.add_stimulus(IndexSeries(name="scenes", data=FRAMES.astype(np.uint32), indexed_images=images,
                                     timestamps=ONSETS, unit="N/A"))
    if running:
        behavior = nwb.create_processing_module(name="running", description="wheel")
        t = np.arange(0, 61, 0.1)
        behavior.add(TimeSeries(name="running_speed", data=2.0 * t, timestamps=t, unit="cm/s"))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path

