"""The run report: one self-contained HTML page (figures embedded; PNG copies alongside).

It shows what a modeller needs to judge a surrogate: the dataset, every metric of every model on
the test split, the ROC curve with the low false-positive region magnified, true vs predicted
soma traces with spike rasters, training curves, and — for sweeps — test AUC and RMSE against
parameter count per model family (the shape of the ELM paper's main figure).
"""

from __future__ import annotations

import base64
import html
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from surrogate.metrics import FEW_SPIKES, auc_caution
from surrogate.plots import learning_curve_figure, sweep_figure, training_figure
from surrogate.train import finished_result
from surrogate.warm_start import describe as describe_warm_start

METRICS = [
    ("spike_auc", "AUC", "{:.4f}"),
    ("spike_auc_ci95", "AUC 95% interval", "{0[0]:.3f}–{0[1]:.3f}"),
    ("tp_at_0.0025_fp", "TP @ 0.25% FP", "{:.3f}"),
    ("auc_at_0.0025_fp", "AUC @ 0.25% FP", "{:.4f}"),
    ("tp_at_0.01_fp", "TP @ 1% FP", "{:.3f}"),
    ("auc_at_0.01_fp", "AUC @ 1% FP", "{:.4f}"),
    ("soma_rmse_mv", "soma RMSE (mV)", "{:.3f}"),
    ("soma_mae_mv", "soma MAE (mV)", "{:.3f}"),
    ("soma_explained_variance_pct", "soma EV (%)", "{:.2f}"),
    ("soma_rmse_raw_mv (not rescaled)", "raw RMSE, not rescaled (mV)", "{:.3f}"),
    ("simulations_kept", "simulations kept", "{}"),
    ("output_spikes", "output spikes", "{}"),
]

STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6rem 0 1.4rem; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; } tr.best td { font-weight: 600; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; } code { background: #f4f4f4; padding: 0 0.2rem; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.caution { border: 2px solid #c77700; background: #fff4dc; padding: 0.5rem 1rem;
           margin: 0.8rem 0 1.2rem; border-radius: 4px; }
.caution strong { color: #8a4b00; } .caution ul { margin: 0.3rem 0; padding-left: 1.2rem; }
"""


def _fmt(value: Any, pattern: str) -> str:
    if value is None:
        return "–"
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return html.escape(str(value))


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _dataset_table(description: dict) -> str:
    head = (
        "<tr><th>split</th><th>simulations</th><th>ms each</th><th>exc input (Hz)</th>"
        "<th>inh input (Hz)</th><th>output (Hz)</th><th>spikes / sim</th><th>sims with 0–24</th>"
        "<th>soma V (mV)</th></tr>"
    )
    rows = []
    for name, s in description["splits"].items():
        if "output" not in s:
            rows.append(
                f"<tr><td>{name}</td><td>{s['complete']}/{s['simulations']}</td>"
                f"<td>{s['duration_ms']}</td>" + "<td>–</td>" * 6 + "</tr>"
            )
            continue
        soma = s["soma_v_mv"]
        rows.append(
            f"<tr><td>{name}</td><td>{s['complete']}/{s['simulations']}</td>"
            f"<td>{s['duration_ms']}</td><td>{s['input_rate_hz']['excitatory']:.2f}</td>"
            f"<td>{s['input_rate_hz']['inhibitory']:.2f}</td><td>{s['output']['rate_hz']:.2f}</td>"
            f"<td>{s['output']['spikes_per_sim_mean']:.1f}</td>"
            f"<td>{100 * s['output']['fraction_sims_0_to_24_spikes']:.0f}%</td>"
            f"<td>{soma['mean']:.2f} ± {soma['sd']:.2f}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def caution_box(title: str, lines: list[str]) -> str:
    """A visible box of cautions (nothing when there are none)."""
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f'<div class="caution"><strong>{html.escape(title)}</strong><ul>{items}</ul></div>'


def _models_table(rows: list[dict], best: str | None) -> str:
    head = (
        "<tr><th>model</th><th>parameters</th>"
        + "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in METRICS)
        + "</tr>"
    )
    body = []
    for row in rows:
        cls = ' class="best"' if row["name"] == best else ""
        cells = "".join(f"<td>{_fmt(row.get(key), pattern)}</td>" for key, _, pattern in METRICS)
        body.append(
            f"<tr{cls}><td>{html.escape(row['name'])}</td><td>{row['parameters']:,}</td>{cells}</tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def build_report(
    out: Path,
    config: Any,
    description: dict,
    runs: dict[str, Path],
    evaluations: dict[str, dict],
    timings: dict[str, float],
) -> Path:
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    warm_starts = []
    fit_warnings = []
    for name, run_dir in runs.items():
        done = finished_result(run_dir)
        provenance = done.get("provenance", {})
        fit_warnings += [f"{name}: {line}" for line in provenance.get("warnings") or []]
        rows.append(
            {
                "name": name,
                "family": done["model"]["family"],
                "parameters": done["parameters"],
                "training_minutes": provenance.get("training_minutes"),
                "start": (provenance.get("warm_start") or {}).get("source", "scratch"),
                **evaluations[name],
            }
        )
        if provenance.get("warm_start"):
            line = f"{name}: {describe_warm_start(provenance['warm_start'])}"
            if done.get("best", {}).get("epoch") == 0:
                line += (
                    "; fine-tuning did not improve the validation result, so the surrogate is "
                    "the warm start itself (epoch 0)"
                )
            warm_starts.append(line)
    scored = [r for r in rows if r.get("spike_auc") is not None]
    best = (
        max(scored, key=lambda r: r["spike_auc"])["name"]
        if scored
        else (rows[0]["name"] if rows else None)
    )
    # computed from the numbers, so that evaluations written before cautions existed get one
    cautions = [f"{r['name']}: {c}" for r in rows if (c := auc_caution(r)) is not None]
    bold = None if cautions else best  # no bold AUC when AUCs are uncertain
    figures: list[tuple[Path, str]] = []
    if best is not None:
        for picture, caption in (
            (
                "roc.png",
                f"Spike prediction ROC of {best} on the {config.evaluate.split} split; the inset "
                "magnifies false-positive rates up to 1 % (dotted: 0.25 % and 1 %).",
            ),
            (
                "traces.png",
                f"Soma voltage of {config.evaluate.split} simulations (clipped at −55 mV as the "
                f"metrics use it) and the prediction of {best} after rescaling; below, "
                "simulated spikes (black) and the surrogate's spike probability.",
            ),
        ):
            source = out / "eval" / best / picture
            if source.exists():
                target = report_dir / picture
                shutil.copyfile(source, target)
                figures.append((target, caption))
    split = config.evaluate.split
    if len({r["training_minutes"] for r in rows}) > 1:
        curve_rows = [
            {
                **r,
                f"{split}_spike_auc": r.get("spike_auc"),
                f"{split}_soma_rmse_mv": r.get("soma_rmse_mv"),
            }
            for r in rows
        ]
        figures.append(
            (
                learning_curve_figure(curve_rows, split, report_dir / "learning_curve.png"),
                f"{split.capitalize()} spike AUC and soma RMSE against simulated training "
                "minutes (log axis), from scratch and warm-started.",
            )
        )
    elif len(rows) > 1:
        figures.append(
            (
                sweep_figure(rows, report_dir / "sweep.png", split),
                "Test spike AUC and soma RMSE against parameter count per model family.",
            )
        )
    if (training := training_figure(runs, report_dir / "training.png")) is not None:
        figures.append((training, "Training loss and validation soma RMSE per epoch."))
    cell = description.get("cell", {})
    timing = " · ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    figure_html = "".join(
        f"<figure>{_image(path, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
        for path, caption in figures
    )
    warm_html = "".join(f'<p class="sub">{html.escape(line)}</p>' for line in warm_starts)
    title = html.escape(config.name)
    ranking = (
        "No model is in bold: its AUC is too uncertain to rank by."
        if cautions
        else "The best model by AUC is in bold."
    )
    segments = cell.get("dendritic_segments") or 0
    subtitle = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} · cell {html.escape(str(cell.get('morphology')))}"
        f" ({segments} dendritic segments, {2 * segments} input channels) · stages: "
        f"{html.escape(timing)}"
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>elmpipe report: {title}</title>
<style>{STYLE}</style></head><body>
<h1>elmpipe report: {title}</h1>
<p class="sub">{subtitle}</p>
<h2>Surrogates on the {html.escape(config.evaluate.split)} split</h2>
<p>NeuronIO protocol: 500 ms windows every 350 ms from a zero state (150 ms burn-in); soma
prediction rescaled to the simulation's mean and SD per file; simulations with 0–24 output
spikes; first 500 ms dropped. The AUC's 95% interval is a bootstrap over test simulations.
{ranking}</p>
{caution_box(f"Caution: fewer than {FEW_SPIKES} test spikes", cautions)}
{caution_box("Caution: the fit", fit_warnings)}
{_models_table(rows, bold)}
{warm_html}
{figure_html}
<h2>Dataset</h2>
{caution_box("Caution: the dataset's output", description.get("warnings") or [])}
{_dataset_table(description)}
<h2>Configuration</h2>
<pre>{html.escape(config.model_dump_json(indent=2))}</pre>
</body></html>
"""
    path = report_dir / "index.html"
    path.write_text(page)
    return path
