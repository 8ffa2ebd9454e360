"""Class maps on figures: a class-index map drawn in its class colours (ignored pixels in black)
and the legend of the classes, shared by the report's figures and the maps' figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cromss.constants import IGNORE_INDEX
from cromss.errors import CromssError

IGNORE_COLOR = "#000000"


def label_colormap(colors: Sequence[str]) -> ListedColormap:
    """Class colours for indices 0..C-1 (ignore pixels are drawn separately)."""
    return ListedColormap(list(colors))


def show_label(axis: Axes, label: np.ndarray, colors: Sequence[str]) -> None:
    """Draw a class-index map with the class colours; ignore (255) in black."""
    label = np.asarray(label)
    valid = label != IGNORE_INDEX
    if (label[valid] >= len(colors)).any():
        raise CromssError(f"label holds class {label[valid].max()}, "
                          f"beyond the {len(colors)} colours")
    axis.set_facecolor(IGNORE_COLOR)
    axis.imshow(np.ma.masked_where(~valid, label), cmap=label_colormap(colors), vmin=-0.5,
                vmax=len(colors) - 0.5, interpolation="nearest")


def class_legend(figure: Figure, classes: Sequence[str], colors: Sequence[str],
                 fontsize: str | float = "small") -> None:
    """The classes' colours and the ignored pixels' black below the figure."""
    handles = [Patch(color=c, label=n) for n, c in zip(classes, colors)]
    handles.append(Patch(color=IGNORE_COLOR, label="ignored"))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5),
                  fontsize=fontsize)
