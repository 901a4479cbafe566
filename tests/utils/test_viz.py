"""segsort_ext.utils.viz.draw_panels: the panel-row helper the recipes' figures share."""
import numpy as np
import pytest

from segsort_ext.utils import viz

plt = pytest.importorskip("matplotlib.pyplot")


def test_draw_panels_titles_notes_no_ticks():
    fig, axes = plt.subplots(2, 3)
    try:
        panels = [np.full((4, 5, 3), k * 60, dtype=np.uint8) for k in range(3)]
        viz.draw_panels(axes[0], panels, titles=["a", "", "c"], notes=["", "n1", "n2"])
        viz.draw_panels(axes[1], panels)
        assert [ax.get_title() for ax in axes[0]] == ["a", "", "c"]
        assert [ax.get_xlabel() for ax in axes[0]] == ["", "n1", "n2"]
        assert all(ax.get_title() == "" and ax.get_xlabel() == "" for ax in axes[1])
        for ax, panel in zip(axes.flat, panels * 2):
            assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
            assert np.array_equal(ax.get_images()[0].get_array(), panel)
    finally:
        plt.close(fig)
