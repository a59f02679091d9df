"""The benchmark's latencies drawn as a PNG bar chart (needs matplotlib)."""

import numpy as np


def plot(panels: list, summary: str, path) -> None:
    """A bar chart of the median latencies of each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(panels), 1, figsize=(9, 1.2 + 1.1 * sum(len(s) for _, s in panels) / 2)
    )
    for axis, (title, stats) in zip(np.atleast_1d(axes), panels, strict=True):
        names = list(stats)
        axis.barh(names, [stats[n]["median_us"] for n in names])
        axis.set_title(title, fontsize=9, loc="left")
        axis.set_xlabel("median latency, us", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.invert_yaxis()
    figure.suptitle(summary, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
