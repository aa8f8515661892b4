"""Write a comparison (the Dataset of ``neurofit.analysis.compare.compare_runs``) as ``table.md``,
``table.csv``, ``tests.csv``, ``interactions.csv`` (with scored interaction maps), ``comparison.png`` and a
self-contained ``report.html`` (figure inlined as base64 PNG, no external files), all built from the same rows
so they never disagree."""

from __future__ import annotations

import base64
import csv
import html
import os
from pathlib import Path

import numpy as np
import xarray as xr

from neurofit.analysis.compare import OVERALL, TABLE_METRICS
from neurofit.analysis.interaction_table import (
    BASELINES,
    VARIABLES,
    as_number,
    has_interaction_maps,
    interaction_records,
)
from neurofit.io import atomic_path, atomic_write_text

SHORT = {"single_trial_correlation": "single-trial r", "correlation_to_average": "r to average",
         "feve": "FEVE", "fraction_of_ceiling": "fraction of ceiling"}
Table = tuple[str, list[str], list[list[str]]]
#: Column labels of the interaction table's map and baselines (``interaction_table.BASELINES``).
BASELINE_LABELS = {"map": "map", "distance_only": "distance-only", "distance_profile": "truth distance profile",
                   "signal_correlation": "signal correlation", "untrained": "untrained"}


def fmt(mean: float, sem: float = np.nan, digits: int = 3) -> str:
    """``mean ± sem``; just the mean where the SEM is undefined; ``-`` where the mean is."""
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f} ± {sem:.{digits}f}" if np.isfinite(sem) else f"{mean:.{digits}f}"


def fmt_p(p: float, significant: bool | None = None) -> str:
    """A p-value for a table, ``*`` appended where significant after correction; ``-`` where not tested."""
    if not np.isfinite(p):
        return "-"
    text = f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"
    return text + (" *" if significant else "")


def overall_table(ds: xr.Dataset) -> Table:
    """One row per architecture: seeds, metrics over recordings (mean ± SEM over seeds), size, training time,
    embedding consistency."""
    header = ["architecture", "seeds"] + [SHORT[m] for m in TABLE_METRICS] + [
        "parameters", "train time (s)", "embedding ARI", "embedding similarity (shuffled)"]
    rows = []
    for arch in ds["architecture"].values:
        a = ds.sel(architecture=arch, recording=OVERALL)
        sim = fmt(float(a["embedding_similarity"]))
        if sim != "-":
            sim += f" ({float(a['embedding_similarity_shuffled']):.3f})"
        rows.append([str(arch), str(a["seeds"].item())]
                    + [fmt(float(a[m]), float(a[f"{m}_sem"])) for m in TABLE_METRICS]
                    + [f"{float(a['n_parameters']):,.0f}", f"{float(a['wall_s']):.1f}",
                       fmt(float(a["embedding_ari"]), float(a["embedding_ari_sem"])), sim])
    return "Overall (mean over recordings; mean ± SEM over seeds)", header, rows


def recording_table(ds: xr.Dataset) -> Table:
    """One row per recording and architecture: metrics as mean ± SEM over seeds."""
    header = ["recording", "architecture"] + [SHORT[m] for m in TABLE_METRICS]
    rows = []
    for rec in ds["recording"].values:
        if rec == OVERALL:
            continue
        for arch in ds["architecture"].values:
            a = ds.sel(architecture=arch, recording=rec)
            rows.append([str(rec), str(arch)] + [fmt(float(a[m]), float(a[f"{m}_sem"])) for m in TABLE_METRICS])
    return "Per recording", header, rows


def tests_table(ds: xr.Dataset) -> Table:
    """One row per pair of architectures: paired tests across neurons and across seeds."""
    header = ["comparison", "neurons", "median Δr (neurons)", "p Wilcoxon", "p Holm (neurons)", "matched seeds",
              "mean Δr (seeds)", "p paired t", "p Holm (seeds)"]
    rows = []
    for pair in ds["pair"].values:
        t = ds.sel(pair=pair)
        rows.append([str(pair), str(int(t["n_neurons"])), f"{float(t['median_difference_neurons']):+.4f}",
                     fmt_p(float(t["p_neurons"])),
                     fmt_p(float(t["p_neurons_holm"]), bool(t["significant_neurons"])),
                     str(int(t["n_seeds_matched"])), f"{float(t['mean_difference_seeds']):+.4f}",
                     fmt_p(float(t["p_seeds"])), fmt_p(float(t["p_seeds_holm"]), bool(t["significant_seeds"]))])
    title = (f"Paired tests (Δr = B - A in single-trial r for 'B vs A'; * = significant at alpha "
             f"{ds.attrs['alpha']} after Holm correction across pairs)")
    return title, header, rows


def reliability_table(ds: xr.Dataset) -> Table:
    """One row per pair: mean gain in each reliability bin (95% bootstrap band) and the rank test of the trend."""
    bins = [f"oracle r {float(lo):.2f}-{float(hi):.2f}" for lo, hi in
            zip(ds["reliability_bin_low"].values, ds["reliability_bin_high"].values)]
    header = ["comparison", *bins, "Spearman rho (gain, oracle r)", "p"]
    rows = []
    for pair in ds["pair"].values:
        t = ds.sel(pair=pair)
        cells = [f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(m) else "-" for m, lo, hi in
                 zip(t["gain_mean"].values, t["gain_low"].values, t["gain_high"].values)]
        rows.append([str(pair), *cells, fmt(float(t["gain_reliability_rho"])),
                     fmt_p(float(t["gain_reliability_p"]))])
    return ("Gain per neuron by reliability (Δr = B - A, neurons in equal-count bins of their oracle correlation; "
            "rho > 0 with a small p: the gain grows with reliability)", header, rows)


def interactions_table(ds: xr.Dataset) -> Table:
    """One row per architecture, interaction map and recording (``overall`` first) with scored maps: AUC of
    coupled pairs and Spearman rho with the planted reference for the map and each baseline, the partial rho
    (mean ± SEM over seeds) and the "beyond distance" verdict."""
    header = ["architecture", "map", "recording", "reference", "scored"] + [
        f"{BASELINE_LABELS[b]} {score}" for b in BASELINES for score in ("AUC", "rho")] + [
        "partial rho", "beyond distance"]
    rows = sorted(interaction_records(ds), key=lambda r: r["recording"] != OVERALL)
    cells = [[r["architecture"], r["interaction_map"], r["recording"], r["reference"], str(r["n_scored"])]
             + [fmt(as_number(r[v]), as_number(r[f"{v}_sem"])) for v in VARIABLES] + [r["beyond_distance"]]
             for r in rows]
    return ("Interaction maps against the planted coupling (AUC: coupled pairs ranked above the rest; rho: "
            "Spearman with the reference; baselines scored alike; partial rho controls for distance and signal "
            "correlation, 'beyond distance' needs it > 0 at p < 0.01; scored: seeds x recordings)", header, cells)


def tables(ds: xr.Dataset) -> list[Table]:
    """Every table of the report, as (title, header, rows of strings)."""
    out = [overall_table(ds), recording_table(ds)]
    if ds.sizes.get("pair", 0):
        out += [tests_table(ds), reliability_table(ds)]
    if has_interaction_maps(ds):
        out.append(interactions_table(ds))
    return out


def to_markdown(ds: xr.Dataset) -> str:
    """The report tables as GitHub Markdown."""
    parts = [f"# Architecture comparison ({ds.attrs['tier']} tier)\n"]
    for title, header, rows in tables(ds):
        parts.append(f"## {title}\n")
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join("---" for _ in header) + "|")
        parts.extend("| " + " | ".join(r) + " |" for r in rows)
        parts.append("")
    return "\n".join(parts)


def write_csv(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Numbers of the table, one row per (architecture, recording) including ``overall``: means and SEMs
    over seeds, plus the per-architecture columns (size, time, embedding consistency)."""
    per_arch = ["n_seeds", "seeds", "n_parameters", "wall_s", "epochs", "embedding_ari", "embedding_ari_sem",
                "embedding_similarity", "embedding_similarity_shuffled"]
    metric_cols = [c for m in TABLE_METRICS for c in (m, f"{m}_sem")]
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["architecture", "recording"] + metric_cols + per_arch)
        for arch in ds["architecture"].values:
            for rec in ds["recording"].values:
                a = ds.sel(architecture=arch, recording=rec)
                writer.writerow([arch, rec] + [_cell(a[c].item()) for c in metric_cols + per_arch])
    return path


def write_tests_csv(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """The paired tests, one row per pair of architectures, every variable over ``pair`` as a column."""
    cols = [name for name, var in ds.data_vars.items() if var.dims == ("pair",)]
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["pair"] + cols)
        for pair in ds["pair"].values:
            writer.writerow([pair] + [_cell(ds[c].sel(pair=pair).item()) for c in cols])
    return path


def write_interactions_csv(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """The interaction-map scores, one row per ``interaction_records`` entry, every field a column."""
    rows = interaction_records(ds)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return path


def _cell(value: object) -> object:
    """CSV cell: NaN as empty, numbers with full precision."""
    if isinstance(value, float) and not np.isfinite(value):
        return ""
    return value


def comparison_figure(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Bar chart of overall single-trial r and r to average (error bars: SEM over seeds), and per-neuron
    scatter of each architecture's seed-averaged single-trial r against the first (baseline) one."""
    import matplotlib.pyplot as plt

    from neurofit.io import save_figure

    archs = [str(a) for a in ds["architecture"].values]
    n_panels = len(archs)  # the bar chart and one scatter per non-baseline architecture
    cols = min(n_panels, 3)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    flat = axes.ravel()
    overall = ds.sel(recording=OVERALL)
    x = np.arange(len(archs))
    for k, metric in enumerate(("single_trial_correlation", "correlation_to_average")):
        sem = np.nan_to_num(overall[f"{metric}_sem"].values)
        flat[0].bar(x + (k - 0.5) * 0.38, overall[metric].values, 0.38, yerr=sem, capsize=3, label=SHORT[metric])
    flat[0].set_xticks(x, archs, rotation=30, ha="right")
    flat[0].set(ylabel="correlation", title="overall (mean ± SEM over seeds)")
    flat[0].legend(fontsize=8)
    r = ds["neuron_single_trial_correlation"]
    base = r.sel(architecture=archs[0]).values
    for ax, arch in zip(flat[1:], archs[1:]):
        other = r.sel(architecture=arch).values
        ax.scatter(base, other, s=6, alpha=0.5)
        finite = np.concatenate([base[np.isfinite(base)], other[np.isfinite(other)]])
        lim = [min(0.0, finite.min()), max(1e-3, finite.max())] if len(finite) else [0.0, 1.0]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set(xlim=lim, ylim=lim, aspect="equal")
        pair = title = f"{arch} vs {archs[0]}"
        if pair in ds["pair"].values:
            title += f"\nWilcoxon p (Holm) = {fmt_p(float(ds['p_neurons_holm'].sel(pair=pair)))}"
        ax.set(xlabel=f"{archs[0]}: single-trial r per neuron", ylabel=f"{arch}: single-trial r", title=title)
    for ax in flat[n_panels:]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def reliability_figure(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Per pair of architectures: mean per-neuron gain in each reliability bin with its 95% bootstrap band."""
    import matplotlib.pyplot as plt

    from neurofit.io import save_figure

    pairs = [str(p) for p in ds["pair"].values]
    cols = min(len(pairs), 3)
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    centres = (ds["reliability_bin_low"].values + ds["reliability_bin_high"].values) / 2
    for ax, pair in zip(axes.ravel(), pairs):
        t = ds.sel(pair=pair)
        ax.fill_between(centres, t["gain_low"].values, t["gain_high"].values, alpha=0.3)
        ax.plot(centres, t["gain_mean"].values, "o-")
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set(xlabel="oracle r (bin centre)", ylabel="Δ single-trial r",
               title=f"{pair}\nrho = {float(t['gain_reliability_rho']):+.2f}, "
                     f"p = {fmt_p(float(t['gain_reliability_p']))}")
    for ax in axes.ravel()[len(pairs):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def to_html(ds: xr.Dataset, png: bytes, reliability_png: bytes | None = None) -> str:
    """A self-contained HTML page: the tables and the figures inlined as base64 PNGs."""
    esc = html.escape
    figures = [("comparison figure", png)]
    if reliability_png:
        figures.append(("gain by reliability", reliability_png))
    body = [f"<h1>Architecture comparison ({esc(str(ds.attrs['tier']))} tier)</h1>"]
    body += [f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
             for alt, data in figures]
    for title, header, rows in tables(ds):
        body.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        body.extend("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
        body.append("</table>")
    body.append("<h2>Runs</h2><ul>" + "".join(f"<li><code>{esc(p)}</code></li>" for p in ds.attrs["runs"])
                + "</ul>")
    body.append("<p>Embedding consistency across seeds: adjusted Rand index of k-means clusters "
                f"(k = {esc(str(ds.attrs.get('clusters', '')))}) of the standardised neuron embeddings, and "
                "per-neuron cosine similarity after orthogonal Procrustes alignment (in brackets: the same with "
                "neurons shuffled, the level alignment alone reaches).</p>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
             "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>neurofit comparison</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(ds: xr.Dataset, out: str | os.PathLike) -> dict[str, Path]:
    """Write every report file into directory ``out``; returns their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # may hold more than the report (a sweep's runs/)
    paths = {"table.md": out / "table.md", "report.html": out / "report.html"}
    atomic_write_text(paths["table.md"], to_markdown(ds))
    paths["table.csv"] = write_csv(ds, out / "table.csv")
    if ds.sizes.get("pair", 0):
        paths["tests.csv"] = write_tests_csv(ds, out / "tests.csv")
    if has_interaction_maps(ds):
        paths["interactions.csv"] = write_interactions_csv(ds, out / "interactions.csv")
    paths["comparison.png"] = comparison_figure(ds, out / "comparison.png")
    reliability_png = None
    if ds.sizes.get("pair", 0):
        paths["gain_vs_reliability.png"] = reliability_figure(ds, out / "gain_vs_reliability.png")
        reliability_png = paths["gain_vs_reliability.png"].read_bytes()
    atomic_write_text(paths["report.html"], to_html(ds, paths["comparison.png"].read_bytes(), reliability_png))
    return paths
