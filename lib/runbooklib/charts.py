"""Charts of the failure data: each `plot_*` returns a matplotlib Figure (never `plt.show()`).

Figures are built with the object API (no pyplot state). So that a Figure returned as a cell's last
value shows as an image in Jupyter and in papermill output, a PNG formatter for Figure is registered
with IPython the first time a chart is made inside a kernel.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.figure import Figure

from runbooklib.redact import REDACTOR

STATUS_COLOURS = {"FAILED": "#cf222e", "BOUNCED": "#bc4c00", "RETRYING": "#d4a72c", "QUEUED": "#8c959f",
                  "SENT": "#54aeff", "DELIVERED": "#1a7f37"}
_registered = False


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _register_formatter() -> None:
    global _registered
    if _registered:
        return
    try:
        from IPython import get_ipython
    except ImportError:  # charts used outside IPython: nothing to register
        _registered = True
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, _png)
    _registered = True


def _figure(width: float = 9.0, height: float = 3.6) -> Figure:
    _register_formatter()
    return Figure(figsize=(width, height), layout="constrained")


def _empty(fig: Figure, title: str, message: str) -> Figure:
    ax = fig.subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#57606a")
    ax.set_axis_off()
    return fig


def run_first(title: str, check: str) -> Figure:
    """The chart a plot draws when the check it draws from has not run in this kernel: it says which one, instead
    of an empty chart that reads as "nothing failed"."""
    return _empty(_figure(height=2.0), title, f"not drawn: run {check} first (this chart draws its result)")


CLASS_COLOURS = {"transient": "#d4a72c", "permanent": "#cf222e", "consent": "#8250df", "config": "#0969da"}


def plot_status_over_time(frame: pd.DataFrame, bucket_seconds: int, *, title: str,
                          statuses: tuple[str, ...] = ("FAILED", "BOUNCED", "RETRYING")) -> Figure:
    """Stacked bars of messages per time bucket for the given statuses.

    `frame` has the columns of `queries.status_over_time`: `bucket`, `status`, `count`.
    """
    data = frame[frame["status"].isin(statuses)] if not frame.empty else frame
    return plot_over_time(data, bucket_seconds, key="status", order=statuses, colours=STATUS_COLOURS, title=title,
                          empty="no failing, bounced or retrying messages in the window")


def plot_over_time(frame: pd.DataFrame, bucket_seconds: int, *, key: str, order: tuple[str, ...],
                   colours: dict[str, str], title: str, empty: str = "nothing in the window") -> Figure:
    """Stacked bars per time bucket, one colour per value of `key` (columns `bucket`, `key`, `count`)."""
    fig = _figure()
    if frame.empty:
        return _empty(fig, title, empty)
    pivot = frame.pivot_table(index="bucket", columns=key, values="count", aggfunc="sum", fill_value=0)
    times = mdates.date2num([datetime.fromtimestamp(int(b) * bucket_seconds, UTC) for b in pivot.index])  # type: ignore[no-untyped-call]
    ax = fig.subplots()
    bottom = [0] * len(times)
    width = bucket_seconds / 86400 * 0.9
    for value in [v for v in order if v in pivot.columns] + [v for v in pivot.columns if v not in order]:
        values = pivot[value].tolist()
        ax.bar(times, values, width=width, bottom=bottom, label=str(value), color=colours.get(str(value)),
               align="edge")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.xaxis_date()
    ax.set_title(title)
    ax.set_ylabel(f"messages per {bucket_seconds // 60 or 1} min" if bucket_seconds >= 60 else "messages")
    ax.set_xlabel("UTC")
    ax.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    return fig


def plot_top_errors(frame: pd.DataFrame, *, title: str = "Top errors", max_label: int = 60) -> Figure:
    """Horizontal bars of the most common errors (`queries.top_errors` columns: `error`, `count`)."""
    fig = _figure(height=max(2.4, 0.45 * len(frame) + 1.2))
    if frame.empty:
        return _empty(fig, title, "no errors recorded in the window")
    ax = fig.subplots()
    labels = [_short(REDACTOR.text(str(e)), max_label) for e in frame["error"]][::-1]
    ax.barh(labels, frame["count"].tolist()[::-1], color="#cf222e")
    ax.set_title(title)
    ax.set_xlabel("messages")
    return fig


def plot_tenant_split(frame: pd.DataFrame, *, title: str = "Failures by tenant") -> Figure:
    """Failed vs other messages per tenant (`queries.tenant_split` columns: `tenant_id`, `total`, `failed`)."""
    fig = _figure(height=max(2.4, 0.4 * len(frame) + 1.2))
    if frame.empty:
        return _empty(fig, title, "no messages in the window")
    ax = fig.subplots()
    labels = [str(t) for t in frame["tenant_id"]][::-1]
    failed = frame["failed"].tolist()[::-1]
    other = (frame["total"] - frame["failed"]).tolist()[::-1]
    ax.barh(labels, failed, color="#cf222e", label="failed")
    ax.barh(labels, other, left=failed, color="#8c959f", label="other statuses")
    for i, (f, t) in enumerate(zip(failed, frame["total"].tolist()[::-1], strict=True)):
        ax.text(f + (t - f), i, f"  {f / t:.0%}" if t else "", va="center", fontsize="small")
    ax.set_title(title)
    ax.set_xlabel("messages in window")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_samples(values: list[float], times: list[datetime], *, title: str, ylabel: str) -> Figure:
    """A small line chart of sampled values (e.g. queue depth during recovery)."""
    fig = _figure(height=2.8)
    if not values:
        return _empty(fig, title, "no samples")
    ax = fig.subplots()
    ax.plot(mdates.date2num(times), values, marker="o")  # type: ignore[no-untyped-call]
    ax.xaxis_date()
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    fig.autofmt_xdate()
    return fig


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_heatmap(frame: pd.DataFrame, *, rows: str, columns: str, title: str, xlabel: str) -> Figure:
    """Counts as a heat map (`frame` has `rows`, `columns` and `count`), each cell labelled."""
    fig = _figure(height=3.4)
    if frame.empty:
        return _empty(fig, title, "nothing in the window")
    pivot = frame.pivot_table(index=rows, columns=columns, values="count", aggfunc="sum", fill_value=0)
    ax = fig.subplots()
    image = ax.imshow(pivot.to_numpy(), aspect="auto", cmap="Reds")
    ax.set_xticks(range(len(pivot.columns)), [str(c) for c in pivot.columns])
    ax.set_yticks(range(len(pivot.index)), [str(i) for i in pivot.index])
    for y, row in enumerate(pivot.to_numpy()):
        for x, value in enumerate(row):
            ax.text(x, y, f"{int(value):,}", ha="center", va="center", fontsize="x-small")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def plot_series(series: dict[str, list[float]], *, title: str, xlabel: str, ylabel: str) -> Figure:
    """One line per name over sample numbers 1..n."""
    fig = _figure(height=3.0)
    if not series or not any(series.values()):
        return _empty(fig, title, "no samples")
    ax = fig.subplots()
    for name, values in series.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return fig


def plot_before_after(panels: dict[str, list[tuple[datetime, float]]], changes: dict[str, list[tuple[datetime, str]]],
                      *, percent: set[str] | None = None) -> Figure:
    """One small panel per key figure over time, with a dashed line at each of its changes (the mitigations),
    so that before and after can be read at a glance. `percent` names the panels whose values are ratios."""
    names = [name for name, points in panels.items() if points]
    columns = 2 if len(names) > 1 else 1
    rows = max(1, -(-len(names) // columns))
    fig = _figure(width=10.0, height=2.4 * rows + 0.4)
    if not names:
        return _empty(fig, "Key figures", "no key figures were measured")
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True).flatten()
    times = [t for name in names for t, _ in panels[name]] + [t for name in names for t, _ in changes.get(name, [])]
    pad = max((max(times) - min(times)) * 0.05, timedelta(seconds=5))
    locator = mdates.AutoDateLocator(maxticks=6)  # type: ignore[no-untyped-call]
    for ax, name in zip(axes, names, strict=False):
        points = sorted(panels[name])
        ax.plot(mdates.date2num([t for t, _ in points]), [v for _, v in points], marker="o",  # type: ignore[no-untyped-call]
                markersize=3)
        for at, label in changes.get(name, []):
            ax.axvline(mdates.date2num(at), color="#1a7f37", linestyle="--", linewidth=1)  # type: ignore[no-untyped-call]
            ax.annotate(_short(label, 28), (mdates.date2num(at), 1.0), xycoords=("data", "axes fraction"),  # type: ignore[no-untyped-call]
                        fontsize="x-small", color="#1a7f37", rotation=90, ha="right", va="top")
        if percent and name in percent:
            ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
        ax.set_title(name, fontsize="small")
        ax.set_ylim(bottom=0)
        ax.xaxis_date()
        ax.set_xlim(mdates.date2num(min(times) - pad), mdates.date2num(max(times) + pad))  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.tick_params(labelbottom=True)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    return fig
