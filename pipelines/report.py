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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elmpipe.outputs import write_text_atomic
from surrogate.metric_table import HEADLINE, METRICS
from surrogate.metrics import FEW_SPIKES, auc_caution
from surrogate.plots import learning_curve_figure, sweep_figure, training_figure
from surrogate.train import finished_result
from surrogate.warm_start import describe as describe_warm_start

Figure = tuple[Path, str]  # a PNG and its caption

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
        + "".join(f"<th>{html.escape(metric.label)}</th>" for metric in METRICS)
        + "</tr>"
    )
    body = []
    for row in rows:
        cls = ' class="best"' if row["name"] == best else ""
        cells = "".join(f"<td>{html.escape(m.format(row.get(m.key)))}</td>" for m in METRICS)
        body.append(
            f"<tr{cls}><td>{html.escape(row['name'])}</td><td>{row['parameters']:,}</td>{cells}</tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


@dataclass
class _Models:
    """The fitted models' rows (their evaluation and provenance), and what to say about them."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    warm_starts: list[str] = field(default_factory=list)
    fit_warnings: list[str] = field(default_factory=list)

    @property
    def best(self) -> str | None:
        scored = [r for r in self.rows if r.get("spike_auc") is not None]
        if scored:
            return str(max(scored, key=lambda r: r["spike_auc"])["name"])
        return self.rows[0]["name"] if self.rows else None

    @property
    def cautions(self) -> list[str]:
        # computed from the numbers, so that evaluations written before cautions existed get one
        return [f"{r['name']}: {c}" for r in self.rows if (c := auc_caution(r)) is not None]


def _collect_models(runs: dict[str, Path], evaluations: dict[str, dict]) -> _Models:
    models = _Models()
    for name, run_dir in runs.items():
        done = finished_result(run_dir) or {}
        provenance = done.get("provenance", {})
        warm = provenance.get("warm_start")
        models.fit_warnings += [f"{name}: {line}" for line in provenance.get("warnings") or []]
        models.rows.append(
            {
                "name": name,
                "family": done["model"]["family"],
                "parameters": done["parameters"],
                "training_minutes": provenance.get("training_minutes"),
                "start": (warm or {}).get("source", "scratch"),
                **evaluations[name],
            }
        )
        if warm:
            line = f"{name}: {describe_warm_start(warm)}"
            if done.get("best", {}).get("epoch") == 0:
                line += (
                    "; fine-tuning did not improve the validation result, so the surrogate is "
                    "the warm start itself (epoch 0)"
                )
            models.warm_starts.append(line)
    return models


def _evaluation_figures(out: Path, report_dir: Path, best: str, split: str) -> list[Figure]:
    """The best model's ROC and traces, copied from its evaluation."""
    captions = {
        "roc.png": f"Spike prediction ROC of {best} on the {split} split; the inset magnifies "
        "false-positive rates up to 1 % (dotted: 0.25 % and 1 %).",
        "traces.png": f"Soma voltage of {split} simulations (clipped at −55 mV as the metrics "
        f"use it) and the prediction of {best} after rescaling; below, simulated spikes "
        "(black) and the surrogate's spike probability.",
    }
    figures = []
    for picture, caption in captions.items():
        source = out / "eval" / best / picture
        if source.exists():
            shutil.copyfile(source, report_dir / picture)
            figures.append((report_dir / picture, caption))
    return figures


def _comparison_figures(
    rows: list[dict[str, Any]], runs: dict[str, Path], report_dir: Path, split: str
) -> list[Figure]:
    """A learning curve (models trained on different amounts of data), or accuracy against
    size (several models); and every model's training curves."""
    figures = []
    if len({r["training_minutes"] for r in rows}) > 1:
        keyed = [{**r, **{f"{split}_{key}": r.get(key) for key in HEADLINE}} for r in rows]
        figures.append(
            (
                learning_curve_figure(keyed, split, report_dir / "learning_curve.png"),
                f"{split.capitalize()} spike AUC and soma RMSE against simulated training "
                "minutes (log axis), from scratch and warm-started.",
            )
        )
    elif len(rows) > 1:
        figures.append(
            (
                sweep_figure(rows, report_dir / "sweep.png", split),
                f"{split.capitalize()} spike AUC and soma RMSE against parameter count per "
                "model family.",
            )
        )
    if (training := training_figure(runs, report_dir / "training.png")) is not None:
        figures.append((training, "Training loss and validation soma RMSE per epoch."))
    return figures


def _subtitle(description: dict, timings: dict[str, float]) -> str:
    cell = description.get("cell", {})
    segments = cell.get("dendritic_segments") or 0
    timing = " · ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} · cell {html.escape(str(cell.get('morphology')))}"
        f" ({segments} dendritic segments, {2 * segments} input channels) · stages: "
        f"{html.escape(timing)}"
    )


def _page(
    config: Any, description: dict, models: _Models, figures: list[Figure], subtitle: str
) -> str:
    cautions = models.cautions
    bold = None if cautions else models.best  # no bold AUC when AUCs are uncertain
    ranking = (
        "No model is in bold: its AUC is too uncertain to rank by."
        if cautions
        else "The best model by AUC is in bold."
    )
    figure_html = "".join(
        f"<figure>{_image(path, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
        for path, caption in figures
    )
    warm_html = "".join(f'<p class="sub">{html.escape(line)}</p>' for line in models.warm_starts)
    title = html.escape(config.name)
    return f"""<!doctype html>
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
{caution_box("Caution: the fit", models.fit_warnings)}
{_models_table(models.rows, bold)}
{warm_html}
{figure_html}
<h2>Dataset</h2>
{caution_box("Caution: the dataset's output", description.get("warnings") or [])}
{_dataset_table(description)}
<h2>Configuration</h2>
<pre>{html.escape(config.model_dump_json(indent=2))}</pre>
</body></html>
"""


def build_report(
    out: Path,
    config: Any,
    description: dict,
    runs: dict[str, Path],
    evaluations: dict[str, dict],
    timings: dict[str, float],
) -> Path:
    """OUT/report/index.html (and its figures as PNGs beside it)."""
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    models = _collect_models(runs, evaluations)
    split = config.evaluate.split
    figures = _evaluation_figures(out, report_dir, models.best, split) if models.best else []
    figures += _comparison_figures(models.rows, runs, report_dir, split)
    page = _page(config, description, models, figures, _subtitle(description, timings))
    path = report_dir / "index.html"
    write_text_atomic(path, page)
    return path
