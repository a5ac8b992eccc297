"""Matplotlib figures as PNG bytes that do not change from run to run."""

from __future__ import annotations

import io


def figure_png(fig, dpi: int) -> bytes:
    """PNG bytes of a matplotlib figure, which is then closed. No Software/date metadata:
    the same figure gives the same bytes, so re-running a stage leaves its pictures alone."""
    import matplotlib.pyplot as plt  # here, not at the top: most users of this module draw nothing

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
