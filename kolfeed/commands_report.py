"""`kolfeed report ...`: the experiment readout and per-KOL attribution, as text or JSON.

The numbers come from ``recsys.experiments.readout`` and ``recsys.attribution``; this module only
loads files and formats. A sample-ratio mismatch is printed in red on stderr so it cannot be missed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from kolfeed.failure import fail

if TYPE_CHECKING:
    from recsys.attribution import AttributionReport
    from recsys.experiments.readout import Estimate, ExperimentReport

report_app = typer.Typer(
    help="Reports: A/B experiment readout and per-KOL attribution.", no_args_is_help=True
)


# --------------------------------------------------------------------------------------- formatting


def _pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _est(e: Estimate, pct: bool) -> str:
    f = _pct if pct else _num
    return f"{f(e.value)} [{f(e.ci_low)}, {f(e.ci_high)}]"


def format_experiment(report: ExperimentReport) -> str:
    conf = f"{100 * report.confidence:g}%"
    window = f"{report.start or '-∞'} → {report.stop or '+∞'}"
    lines = [f"experiment {report.experiment}  (control: {report.control}, window {window}, {conf} CIs)", ""]
    header = (
        f"{'arm':<16}{'variant':<14}{'users':>9}{'impr':>10}  "
        f"{'CTR':<28}{'share rate':<28}{'buy conv':<28}GMV/user"
    )
    lines.append(header)
    for a in report.arms:
        lines.append(
            f"{a.name:<16}{a.variant:<14}{a.users:>9,}{a.impressions:>10,}  {_est(a.ctr, True):<28}"
            f"{_est(a.share_rate, True):<28}{_est(a.buy_conversion, True):<28}{_est(a.gmv_per_user, False)}"
        )
    for a in report.arms:
        if not a.vs_control:
            continue
        lines += ["", f"{a.name} vs {report.control}:"]
        for c in a.vs_control.values():
            p = "—" if c.p_value is None else f"{c.p_value:.4f}"
            flag = "  *" if c.significant else ""
            lines.append(
                f"  {c.metric:<16} lift {_pct(c.lift, 1):>8} "
                f"[{_pct(c.lift_ci_low, 1)}, {_pct(c.lift_ci_high, 1)}]  p={p}{flag}"
            )
    lines += ["", f"SRM: {report.srm.message}"]
    lines += [f"note: {n}" for n in report.notes if n != report.srm.message]
    return "\n".join(lines)


def format_kols(report: AttributionReport, top: int | None) -> str:
    rows = report.kols[:top] if top else report.kols
    w = max([7, *(len(k.kol_id) + 1 for k in rows)])  # string creator ids may be long
    lines = [
        f"KOL attribution: {report.log_buys:,} buys, GMV {report.log_gmv:,.2f} in the log; "
        f"attributed {report.attributed_gmv:,.2f} ({'balanced' if report.balanced else 'NOT BALANCED'}); "
        f"share cascades up to depth {report.depth_limit}",
        "",
        f"{'kol':>{w}}{'impr':>10}{'clicks':>8}{'shares':>8}{'buys':>7}{'GMV':>12}{'via share':>11}"
        f"{'CTR':>8}{'buy/clk':>9}{'follows':>9}{'v-fit':>7}{'commission':>12}{'ROI':>7}",
    ]
    for k in rows:
        lines.append(
            f"{k.kol_id:>{w}}{k.impressions:>10,}{k.clicks:>8,}{k.shares:>8,}{k.buys:>7,}{k.gmv:>12,.2f}"
            f"{_pct(_div(k.share_gmv, k.gmv), 1):>11}{_pct(k.click_rate, 1):>8}{_pct(k.buy_per_click, 1):>9}"
            f"{'—' if k.followers_gained is None else k.followers_gained:>9}{_pct(k.vertical_fit, 0):>7}"
            f"{_num(k.commission):>12}{_num(k.roi):>7}"
        )
    if top and len(report.kols) > top:
        lines.append(f"… {len(report.kols) - top} more KOLs (use --top 0 for all)")
    u = report.unattributed
    lines += [
        "",
        f"unattributed: {u.buys:,} buys, GMV {u.gmv:,.2f} (no KOL: {u.by_reason['no_kol']:,.2f}; "
        f"beyond depth {report.depth_limit}: {u.by_reason['beyond_depth']:,.2f})",
    ]
    if report.buys_unknown_path:
        lines.append(
            f"note: {report.buys_unknown_path:,} buys had no share path in request_id; counted as direct"
        )
    return "\n".join(lines)


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


# ----------------------------------------------------------------------------------------- commands


@report_app.command("experiment")
def experiment_cmd(
    name: str = typer.Argument(..., help="experiment name (a file in --config-dir)"),
    events: Path = typer.Option(
        ..., help="events file (.parquet/.csv), a world directory, or the service's event log (var/eventlog)"
    ),
    config_dir: Path = typer.Option(Path("configs/experiments"), help="directory of experiment YAML files"),
    alpha: float = typer.Option(0.05, help="significance level per comparison"),
    bootstrap: int = typer.Option(0, help="bootstrap resamples for the GMV/user CI (0 = t interval)"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Per-arm readout with CIs, lift and p-values vs control, and a sample-ratio-mismatch check."""
    from recsys.event_columns import EventTableError
    from recsys.experiments.config import ExperimentConfigError, find_experiment
    from recsys.experiments.readout import experiment_report
    from serving.event_source import EventSourceError, load_event_tables

    try:
        exp = find_experiment(name, config_dir)
        typer.echo(f"loading events from {events} …", err=True)
        tables = load_event_tables(events)
        report = experiment_report(tables.events, exp, alpha=alpha, bootstrap_resamples=bootstrap)
    except (ExperimentConfigError, EventSourceError, EventTableError, ValueError, OSError) as exc:
        fail(exc)
    if report.srm_warning:
        typer.secho(f"WARNING: {report.srm.message}", err=True, fg=typer.colors.RED, bold=True)
    typer.echo(report.model_dump_json(indent=2) if json_out else format_experiment(report))


@report_app.command("kols")
def kols_cmd(
    events: Path = typer.Option(
        ...,
        help="events file (.parquet/.csv), a world directory (adds items/kols/follows), or the service's "
        "event log (var/eventlog)",
    ),
    commission: float | None = typer.Option(None, help="commission rate on GMV, e.g. 0.1"),
    costs: Path | None = typer.Option(None, help="CSV kol_id,cost for ROI = commission / cost"),
    depth_limit: int = typer.Option(3, help="share hops a buy may be away from the KOL's post"),
    start_ts: int | None = typer.Option(None, help="window start (unix seconds, inclusive)"),
    stop_ts: int | None = typer.Option(None, help="window stop (unix seconds, exclusive)"),
    top: int = typer.Option(20, help="rows to print (0 = all; JSON always has all)"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
    run: Path | None = typer.Option(
        None,
        help="a run directory whose labels.parquet names string creator ids the events do not spell out "
        "(an event log holds only keys)",
    ),
) -> None:
    """Per-KOL funnel, GMV (direct and through share cascades), followers gained, vertical fit, ROI."""
    from recsys.artifacts import LABELS, MANIFEST, ArtifactError, load_labels
    from recsys.attribution import AttributionError, kol_attribution
    from recsys.event_columns import EventTableError
    from serving.event_source import EventSourceError, load_costs, load_event_tables

    try:
        typer.echo(f"loading events from {events} …", err=True)
        tables = load_event_tables(events)
        if run is not None and not (run / MANIFEST).is_file():
            raise ArtifactError(f"{run}: no {MANIFEST}; --run must be a run directory")
        kol_labels = dict(tables.kol_labels)  # string creator ids the files spell out
        if run is not None:  # an event log holds only keys: the run names them
            kol_labels.update(load_labels(run / LABELS)["kol"])
        report = kol_attribution(
            tables.events,
            items=tables.items,
            kols=tables.kols,
            follows=tables.follows,
            depth_limit=depth_limit,
            commission_rate=commission,
            costs=load_costs(costs) if costs is not None else None,
            start_ts=start_ts,
            stop_ts=stop_ts,
            progress=True,
            kol_labels=kol_labels,
        )
    except (AttributionError, ArtifactError, EventSourceError, EventTableError, ValueError, OSError) as exc:
        fail(exc)
    if not report.balanced:
        typer.secho(
            f"WARNING: attributed GMV {report.attributed_gmv} != log GMV {report.log_gmv}",
            err=True,
            fg=typer.colors.RED,
            bold=True,
        )
    typer.echo(report.model_dump_json(indent=2) if json_out else format_kols(report, top or None))


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
