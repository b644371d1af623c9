"""`xc.plotting`: the figure functions, the house style and display names in one namespace.

    import xaicompare as xc
    with xc.plotting.style(), xc.plotting.display_names(models={"resnet18": "ResNet-18"}):
        fig, (left, right) = plt.subplots(1, 2, layout="constrained")
        xc.plotting.plot_dendrogram(tree, ax=left)
        xc.plotting.plot_dissimilarity_heatmap(D, ax=right, linewidths=0.5)
"""

from .report import *  # noqa: F403
from .report import __all__  # noqa: F401
