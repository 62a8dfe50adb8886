"""`bertbatch compare --plot FILE.png`: the eval metric and the train loss against step, one line
per run, from each run's history in metrics.json.

The figure is drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global
backend state), so it works on a server and in CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertbatch_contract import layout

from ..core.errors import BertBatchError
from .comparison import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def points(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that have both, in step order."""
    pairs = []
    for r in records:
        step, value = r.get("step"), r.get(key)
        if isinstance(step, (int, float)) and isinstance(value, (int, float)):
            pairs.append((float(step), float(value)))
    pairs.sort()
    return [p[0] for p in pairs], [p[1] for p in pairs]


def figure(runs: list[Run], metric: str) -> Figure:
    """One axes for `metric` per evaluation and, when any run has a train-loss history, one for
    the train loss; one line per run that has points."""
    # matplotlib takes most of a second to import: only when a chart is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with_train = any(points(r.train_history, "train_loss")[0] for r in runs)
    fig = Figure(figsize=(10, 4.5 if not with_train else 8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if with_train else 1, 1, squeeze=False)[:, 0]
    eval_axes = axes[0]
    for r in runs:
        steps, values = points(r.history, metric)
        if steps:
            eval_axes.plot(steps, values, marker="o", label=r.run_id)
    eval_axes.set(title=f"{metric} per evaluation", xlabel="step", ylabel=metric)
    if with_train:
        train_axes = axes[1]
        for r in runs:
            steps, values = points(r.train_history, "train_loss")
            if steps:
                train_axes.plot(steps, values, label=r.run_id)
        train_axes.set(title="train loss", xlabel="step", ylabel="train_loss")
    for ax in axes:
        if ax.get_lines():
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return fig


def check_path(plot: str | None) -> Path | None:
    """--plot FILE.png, checked before any AWS call: a .png in a directory that exists."""
    if plot is None:
        return None
    path = Path(plot)
    if path.suffix.lower() != ".png":
        raise BertBatchError(f"--plot {plot}: write a .png file")
    if not path.parent.is_dir():
        raise BertBatchError(f"--plot {plot}: no such directory {path.parent}")
    return path


def save(runs: list[Run], metric: str, path: Path) -> Figure:
    """Write the figure as PNG to `path` (checked by `check_path`); returns the figure."""
    if not any(points(r.history, metric)[0] for r in runs):
        raise BertBatchError(f"--plot {path}: no run has a {metric} history in its {layout.METRICS_FILE} to plot")
    fig = figure(runs, metric)
    fig.savefig(path, format="png", dpi=100)
    return fig
