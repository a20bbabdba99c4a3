"""Held-out accuracy against the number of labelled images per class, one panel per data set,
from benchmarks/results/quality.json (drawn when the documentation is built)."""

import json
from pathlib import Path

import matplotlib.pyplot as plt

# The plot directive runs this file from its own directory (docs/_plots).
RESULTS = Path("..", "..", "benchmarks", "results", "quality.json")
# Labelled training images per class in the "all" column (see "What is measured").
ALL_PER_CLASS = {"digits": 1347 / 10, "nudged": 7188 / 10, "mnist": 1250 / 5}
TITLES = {
    "digits": "digits (1 347 training images)",
    "nudged": "nudged digits (7 188)",
    "mnist": "MNIST 0-4, features from 5-9 (1 250)",
}
STYLE = {
    "raw pixels": dict(color="black", marker="o", linestyle="--"),
    "PCA (95% variance)": dict(color="tab:gray", marker="s", linestyle=":"),
    "BernoulliRBM": dict(color="tab:orange", marker="^"),
    "SparseAutoencoder (defaults)": dict(color="tab:blue", marker="D", linewidth=2),
    "SparseAutoencoder (grid best)": dict(color="tab:cyan", marker="v"),
}

results = json.loads(RESULTS.read_text())["results"]
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), layout="constrained")
for ax, (name, methods) in zip(axes, results.items()):
    x = [10, 50, ALL_PER_CLASS[name]]
    for method, style in STYLE.items():
        columns = [methods[method][k] for k in ("10/class", "50/class", "all")]
        ax.errorbar(
            x,
            [c["accuracy"] for c in columns],
            yerr=[c["std"] for c in columns],
            label=method,
            capsize=2,
            markersize=4,
            **style,
        )
    ax.set_xscale("log")
    ax.set_xticks(x, ["10", "50", f"all\n({x[2]:.0f})"])
    ax.minorticks_off()
    ax.set_title(TITLES[name], fontsize=10)
    ax.set_xlabel("labelled images per class")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("held-out accuracy")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=5,
           fontsize=8, frameon=False)
