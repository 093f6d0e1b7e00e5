"""The robustness card as a picture: per nuisance factor, the metric at the card's three
strengths as grouped horizontal bars, the clean figure as a dashed line and the worst factor
highlighted (``dataset_eval.robustness_card``, ``detector_eval.robustness_card``).

Training writes it beside ``evaluation.json`` (``CHART_FILE``), ``visionline eval --chart``
writes it anywhere, and the operator API serves it per model version. matplotlib is imported
when a chart is drawn, so a process that never draws one never loads it; the figure is drawn
without pyplot (no global state), so API requests in threads can draw at the same time.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

EVALUATION_FILE = "evaluation.json"  # the full evaluation training writes beside the model
CHART_FILE = "robustness.png"  # its card as a picture, beside it
WIDTH_IN, HEIGHT_IN, DPI = 9.0, 6.0, 100  # 900 x 600 pixels, whatever the card holds
# The metric the picture shows: detectors' mAP@0.5, classifiers' accuracy, anomaly models'
# image AUROC (or, with no anomalous image to score, the good images' false-positive rate).
METRICS = (
    ("map50", "mAP@0.5"),
    ("accuracy", "accuracy"),
    ("auroc", "image AUROC"),
    ("fpr", "false-positive rate (good images)"),
)
STRENGTH_COLOURS = ("#9ecae1", "#4292c6", "#08306b")  # light to dark: weak to strong
WORST_COLOUR = "#c0392b"


def card_metric(evaluation: dict) -> tuple[str, str]:
    """(key, label) of the metric the card holds; ValueError when there is no card."""
    card = evaluation.get("robustness")
    if not isinstance(card, dict) or not card:
        raise ValueError("the evaluation has no robustness card (evaluated with --no-card?)")
    first = next(iter(card.values()))
    cell = next(iter(first.values()), None) if isinstance(first, dict) else None
    for key, label in METRICS:
        if isinstance(cell, dict) and isinstance(cell.get(key), int | float):
            return key, label
    raise ValueError("the robustness card holds none of " + ", ".join(k for k, _ in METRICS))


def _strengths(evaluation: dict) -> list[str]:
    """The card's strength keys, weakest first ("0.25", "0.5", "1.0")."""
    listed = evaluation.get("strengths")
    if listed:
        return [str(float(s)) for s in listed]
    first = next(iter(evaluation["robustness"].values()))
    return sorted(first, key=float)


def _value(cell: dict, key: str) -> float:
    value = cell.get(key)
    return float(value) if isinstance(value, int | float) else math.nan


def card_table(evaluation: dict) -> dict:
    """What the picture shows, checked: factors, strengths, values[factor][i], the clean
    figure, the worst factor, the metric's key and label. ValueError on a malformed card."""
    key, label = card_metric(evaluation)
    try:
        strengths = _strengths(evaluation)
        card = evaluation["robustness"]
        values = {f: [_value(card[f][s], key) for s in strengths] for f in card}
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"malformed robustness card: {error!r}") from None
    if not strengths:
        raise ValueError("malformed robustness card: no strength")
    figures = evaluation.get("clean")
    clean = figures.get(key) if isinstance(figures, dict) else evaluation.get(key)
    worst = evaluation.get("worst_factor")
    if not isinstance(worst, str) or worst not in card:  # none recorded: the lowest, strongest
        worst = min(card, key=lambda f: (values[f][-1], f))
    return {
        "factors": list(card),
        "strengths": strengths,
        "values": values,
        "clean": float(clean) if isinstance(clean, int | float) else None,
        "worst": worst,
        "key": key,
        "label": label,
    }


def _title(evaluation: dict) -> str:
    name = "robustness card"
    if evaluation.get("model"):
        version = evaluation.get("version")
        name += f": {evaluation['model']}" + (f" version {version}" if version else "")
    if evaluation.get("dataset"):
        dataset, _, version = str(evaluation["dataset"]).partition("@")
        dataset += f"@{version[:12]}" if version else ""  # a content hash: its start suffices
        name += f"\non {dataset} (held-out images)"
    return name


def render_card(evaluation: dict) -> bytes:
    """The PNG (900 x 600) of ``evaluation``'s robustness card; ValueError without one."""
    table = card_table(evaluation)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    _draw_bars(axes, table)
    axes.set_title(_title(evaluation), fontsize=11, loc="left")
    figure.subplots_adjust(left=0.2, right=0.97, top=0.88, bottom=0.1)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _draw_bars(axes, table: dict) -> None:
    factors, strengths = table["factors"], table["strengths"]
    height = 0.8 / len(strengths)
    for i, strength in enumerate(strengths):
        offsets = [row + (i - (len(strengths) - 1) / 2) * height for row in range(len(factors))]
        axes.barh(
            offsets,
            [table["values"][f][i] for f in factors],
            height=height,
            color=STRENGTH_COLOURS[i % len(STRENGTH_COLOURS)],
            label=f"strength {strength}",
        )
    worst_row = factors.index(table["worst"])
    axes.axhspan(worst_row - 0.45, worst_row + 0.45, color=WORST_COLOUR, alpha=0.12, zorder=0)
    if table["clean"] is not None:
        clean = table["clean"]
        axes.axvline(
            clean, color="black", linestyle="--", linewidth=1.2, label=f"clean {clean:.3f}"
        )
    axes.set_yticks(range(len(factors)), [f.replace("_", " ") for f in factors])
    tick = axes.get_yticklabels()[worst_row]
    tick.set_color(WORST_COLOUR)
    tick.set_fontweight("bold")
    axes.invert_yaxis()  # the card's order, top to bottom
    axes.set_xlim(0.0, 1.0)
    worst_value = table["values"][table["worst"]][-1]
    axes.set_xlabel(
        f"{table['label']} (worst: {table['worst'].replace('_', ' ')}, "
        f"{worst_value:.3f} at strength {strengths[-1]})"
    )
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=False)


def write_chart(path: Path, evaluation: dict) -> Path:
    """Draw ``evaluation``'s card into ``path`` (its folder made if need be)."""
    content = render_card(evaluation)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def read_evaluation(folder: Path) -> dict | None:
    """A version folder's ``evaluation.json``; None without one, ValueError when it is not a
    JSON object. NaN and infinities (Python's json writes them) read as None: strict JSON."""
    try:
        text = (folder / EVALUATION_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    evaluation = json.loads(text, parse_constant=lambda _: None)
    if not isinstance(evaluation, dict):
        raise ValueError(f"{EVALUATION_FILE} is not a JSON object")
    return evaluation


def version_chart(folder: Path, model: str, version: int) -> bytes:
    """The card of model version ``folder`` as a PNG: its ``robustness.png``, else drawn from
    its ``evaluation.json``. ValueError (saying why) when it has no card."""
    try:
        return (folder / CHART_FILE).read_bytes()
    except FileNotFoundError:
        pass
    evaluation = read_evaluation(folder)
    if evaluation is None:
        raise ValueError(f"{model} version {version} has no {EVALUATION_FILE}")
    return render_card({"model": model, "version": version} | evaluation)
