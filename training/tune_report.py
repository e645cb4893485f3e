"""The tune's readable outputs: ``trials.csv`` (one row per trial) and ``trials.png`` (objective per
trial with the best so far, and parameter importance of the best model's parameters)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "model": t.user_attrs.get("model", t.params.get("model", "")),
                "value": "" if t.value is None else round(float(t.value), 6),
                "seconds": round(float(t.user_attrs.get("seconds", 0.0)), 3),
                "params": json.dumps({k: v for k, v in t.params.items() if k != "model"}, sort_keys=True),
            }
        )
    return rows


def importances(study: Any, model: str) -> dict[str, float]:
    """fANOVA importance of ``model``'s searched parameters over its finished trials ({} if too few)."""
    import optuna

    names = sorted(
        {k for t in study.trials if t.user_attrs.get("model") == model for k in t.params} - {"model"}
    )
    done = [
        t
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("model") == model
    ]
    if len(done) < 4 or not names:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study, params=names))
    except (RuntimeError, ValueError):  # e.g. a parameter with a single value so far
        return {}


def _last_report(trial: Any) -> float:
    values = trial.intermediate_values
    return float(values[max(values)]) if values else 0.0


def write_trials(study: Any, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    rows = trial_rows(study)
    with open(out_dir / "trials.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["number"])
        writer.writeheader()
        writer.writerows(rows)
    best = study.best_trial
    model = str(best.user_attrs.get("model", ""))
    imp = importances(study, model)
    (out_dir / "importance.json").write_text(json.dumps({"model": model, "importance": imp}, indent=2))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    ax = axes[0]
    models = sorted({str(r["model"]) for r in rows})
    for i, m in enumerate(models):
        xs = [t.number for t in study.trials if t.value is not None and t.user_attrs.get("model") == m]
        ys = [t.value for t in study.trials if t.value is not None and t.user_attrs.get("model") == m]
        ax.scatter(xs, ys, s=14, color=f"C{i}", label=m)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            [
                t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else 0
                for t in pruned
            ],
            s=14,
            marker="x",
            color="grey",
            label="pruned (last report)",
        )
    best_so_far, xs_b, cur = [], [], float("-inf")
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None:
            cur = max(cur, t.value)
            xs_b.append(t.number)
            best_so_far.append(cur)
    ax.step(xs_b, best_so_far, where="post", color="black", lw=1, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation objective")
    ax.set_title("objective per trial")
    ax.legend(fontsize=7)
    ax = axes[1]
    if imp:
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names])
        ax.set_title(f"parameter importance ({model}, fANOVA)")
    else:
        ax.text(0.5, 0.5, "too few finished trials for importance", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out_dir / "trials.png", dpi=100)
    plt.close(fig)
