"""What every training run writes beside its model: ``train_config.json``, ``loss_curve.json`` and
``loss_curve.png`` (byte-stable: no version stamp in the figure)."""
from __future__ import annotations

import importlib.metadata
import math
from pathlib import Path
from typing import Any

from hardneg.io import write_json


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a training run depends on (absent ones are left out)."""
    out = {}
    for dist in ("hardneg", "sentence-transformers", "transformers", "torch", "datasets", "accelerate", "peft",
                 "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def loss_curve_of(log_history: list[dict[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """Trainer log history -> {"train": [{step, loss, learning_rate, ...}], "eval": [{step, eval_loss}]}."""
    train_rows, eval_rows = [], []
    for rec in log_history:
        if "loss" in rec:
            train_rows.append({k: rec[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm")
                               if k in rec})
        elif "eval_loss" in rec:
            eval_rows.append({"step": rec["step"], "epoch": rec.get("epoch"), "eval_loss": rec["eval_loss"]})
    return {"train": train_rows, "eval": eval_rows}


def write_records(folder: Path, record: dict[str, Any], curve: dict[str, list[dict[str, float]]]) -> None:
    """What every training run writes beside its model: train_config.json, loss_curve.json and .png."""
    write_json(folder / "train_config.json", record)
    write_json(folder / "loss_curve.json", curve)
    _plot(curve, folder / "loss_curve.png")


def _plot(curve: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in curve["train"]]
    ax.plot(steps, [r["loss"] for r in curve["train"]], marker=".", label="train loss")
    if curve["eval"]:
        ax.plot([r["step"] for r in curve["eval"]], [r["eval_loss"] for r in curve["eval"]], marker="o",
                linestyle="--", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r.get("learning_rate", math.nan) for r in curve["train"]], color="grey", alpha=0.5,
               label="learning rate")
    lr_ax.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    lr_lines = lr_ax.get_legend_handles_labels()
    ax.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: same curve, same bytes
    plt.close(fig)
