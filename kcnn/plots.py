"""PNG figures with matplotlib's headless Agg canvas: kernels, feature maps, curves, confusion.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot global state, no GUI), and each
file is written atomically: rendered to a temporary file in the target folder, then ``os.replace``d.
Every function returns the path it wrote.
"""
from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from kcnn.files import atomic_write

__all__ = ["plot_kernels", "plot_feature_maps", "plot_curves", "plot_confusion"]

_CURVES = (("loss", "train loss"), ("accuracy", "train acc"), ("test_accuracy", "test acc"),
           ("val_loss", "val loss"), ("val_accuracy", "val acc"))


def _save(fig, path, dpi=100):
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"),
                        binary=True)


def _mosaic(tiles, cols, gap=1):
    """Tiles (n, h, w[, 3]) laid out row-major in ``cols`` columns, NaN-filled gaps between them."""
    n, h, w = tiles.shape[:3]
    rows = math.ceil(n / cols)
    shape = (rows * (h + gap) - gap, cols * (w + gap) - gap) + tiles.shape[3:]
    out = np.full(shape, np.nan, dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    return out


def _show(mosaic, cmap=None, vmin=None, vmax=None, title=""):
    """One-axes figure of a mosaic; gaps (NaN) drawn white."""
    h, w = mosaic.shape[:2]
    scale = 8 / max(h, w)
    fig = Figure(figsize=(max(2.5, w * scale), max(2.5, h * scale) + 0.5))
    ax = fig.subplots()
    if mosaic.ndim == 3:  # RGB: NaN gaps -> white
        mosaic = np.where(np.isnan(mosaic), 1.0, mosaic)
    else:
        cmap = matplotlib.colormaps[cmap or "viridis"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_frame_on(False)
    ax.set_title(title, fontsize=9)
    return fig


def _unit(tiles):
    """Scale each tile to [0, 1] on its own (constant tiles become 0.5)."""
    axes = tuple(range(1, tiles.ndim))
    lo = tiles.min(axis=axes, keepdims=True)
    span = tiles.max(axis=axes, keepdims=True) - lo
    return np.where(span > 0, (tiles - lo) / np.where(span > 0, span, 1), 0.5)


def _kernel_array(layer_or_kernel):
    kernel = getattr(layer_or_kernel, "kernel", layer_or_kernel)
    try:
        arr = np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel, dtype=np.float32)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 4:
        shape = None if arr is None else arr.shape
        raise ValueError(
            "layer_or_kernel must be a built 2-D convolution layer or a kernel array of shape "
            f"(kernel_h, kernel_w, in_channels, filters); received shape {shape}")
    return arr


def grid_columns(count, *, aspect=1.5):
    """Columns of a grid for ``count`` equal tiles that is about ``aspect`` times wider than tall."""
    return max(1, min(count, math.ceil(math.sqrt(count * aspect))))


def plot_kernels(layer_or_kernel, path, *, max_filters=64, title=None):
    """Grid image of a conv layer's kernels (what the first layers "look for").

    One tile per (filter, input channel) pair in grey scale, rows = filters; a 1-channel kernel is
    one grey tile per filter and a 3-channel kernel one RGB tile per filter, both in a grid about
    1.5 times wider than tall (it fits a screen). At most ``max_filters`` filters (and 16 input channels)
    are drawn. All grey tiles share one symmetric colour scale so magnitudes compare.

    Args:
        layer_or_kernel: a built ``Conv2D``/``CrossCorrelation2D`` layer, or an array
            ``(kh, kw, in_channels, filters)``.
        path: PNG file to write.
    """
    kernel = _kernel_array(layer_or_kernel)
    kh, kw, cin_all, cout_all = kernel.shape
    cout = min(cout_all, max_filters)
    name = getattr(layer_or_kernel, "name", "kernel")
    heading = title or f"{name}: {cout_all} filters {kh}x{kw}x{cin_all}"
    if cin_all == 3:  # colour input: one RGB tile per filter
        tiles = _unit(np.moveaxis(kernel[..., :cout], 3, 0))
        fig = _show(_mosaic(tiles, grid_columns(cout)), title=heading)
    elif cin_all == 1:  # one input channel: one grey tile per filter, in a near-square grid
        tiles = np.moveaxis(kernel[:, :, 0, :cout], 2, 0)
        limit = float(np.abs(tiles).max()) or 1.0
        fig = _show(_mosaic(tiles, grid_columns(cout)), cmap="gray", vmin=-limit, vmax=limit,
                    title=heading)
    else:  # rows = filters, columns = input channels, one shared symmetric grey scale
        cin = min(cin_all, 16)
        tiles = np.moveaxis(kernel[:, :, :cin, :cout], (3, 2), (0, 1)).reshape(cout * cin, kh, kw)
        limit = float(np.abs(tiles).max()) or 1.0
        fig = _show(_mosaic(tiles, cin), cmap="gray", vmin=-limit, vmax=limit,
                    title=heading + "\n(rows: filters, columns: input channels)")
    return _save(fig, path)


def _prepare_image(image, input_shape):
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim == 3:
        arr = arr[None]
    expected = tuple(input_shape[1:])
    if arr.ndim != 4 or arr.shape[0] != 1 or (
            None not in expected and tuple(arr.shape[1:]) != expected):
        raise ValueError(
            f"image must be one image of shape {expected} (or with a leading batch axis of 1); "
            f"received shape {np.shape(image)}")
    return arr


def plot_feature_maps(model, layer_name, image, path, *, max_maps=64, title=None):
    """Grid image of the feature maps a layer produces for one input image (as CNN Explainer).

    Args:
        model: a built functional/Sequential ``keras.Model``.
        layer_name: name of a layer with a 4-D output ``(1, h, w, channels)``.
        image: ``(H, W, C)``, ``(H, W)`` or ``(1, H, W, C)``; uint8 is scaled to [0, 1].
        path: PNG file to write.
        max_maps: draw at most this many channels.
    """
    import keras

    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers)
        raise ValueError(
            f"layer_name={layer_name!r} is not a layer of model {model.name!r}; layers: {names}"
        ) from None
    if len(layer.output.shape) != 4:
        raise ValueError(
            f"layer {layer_name!r} outputs shape {tuple(layer.output.shape)}; feature maps need a "
            "4-D (batch, height, width, channels) output")
    x = _prepare_image(image, model.inputs[0].shape)
    probe = keras.Model(model.inputs[0], layer.output)
    maps = keras.ops.convert_to_numpy(probe(x, training=False))[0]
    n = min(maps.shape[-1], max_maps)
    tiles = _unit(np.moveaxis(maps[:, :, :n], 2, 0))
    fig = _show(_mosaic(tiles, min(n, 8)), cmap="viridis", vmin=0, vmax=1,
                title=title or f"{layer_name}: {maps.shape[-1]} maps {maps.shape[0]}x{maps.shape[1]}"
                " (each scaled to its own range)")
    return _save(fig, path)


def _number(value):
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def curves_figure(history_rows, *, title=None):
    """Training curves against the epoch as a matplotlib ``Figure``, one axes like d2l's ``Animator``.

    Args:
        history_rows: list of dicts with ``epoch`` and any of ``loss``, ``accuracy``,
            ``test_accuracy`` (also ``val_loss``, ``val_accuracy``); values may be numbers or
            numeric strings (rows read back from ``history.csv``), missing values are skipped.
    """
    rows = list(history_rows)
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError("history_rows must be a non-empty list of dicts (one per epoch)")
    epochs = [_number(r.get("epoch", i + 1)) for i, r in enumerate(rows)]
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    drawn = 0
    for key, label in _CURVES:
        values = [_number(r.get(key)) for r in rows]
        if all(math.isnan(v) for v in values):
            continue
        ax.plot(epochs, values, marker="o" if len(rows) < 3 else None, label=label)
        drawn += 1
    if not drawn:
        raise ValueError(
            "history_rows have none of the keys " + ", ".join(k for k, _ in _CURVES))
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def plot_curves(history_rows, path, *, title=None):
    """Write :func:`curves_figure` of ``history_rows`` to the PNG file ``path``."""
    return _save(curves_figure(history_rows, title=title), path)


def plot_confusion(matrix, class_names, path, *, normalize=False, title=None):
    """Confusion matrix (rows = true class, columns = predicted) with class labels.

    Args:
        matrix: square array of counts, ``n x n``.
        class_names: ``n`` labels.
        path: PNG file to write.
        normalize: show each row as fractions of its true-class total.
    """
    m = np.asarray(matrix, dtype=np.float64)
    names = [str(c) for c in class_names]
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"matrix must be a non-empty square 2-D array; received shape {m.shape}")
    if len(names) != m.shape[0]:
        raise ValueError(
            f"class_names must have {m.shape[0]} entries to match matrix; received {len(names)}")
    if normalize:
        totals = m.sum(axis=1, keepdims=True)
        m = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
    n = m.shape[0]
    side = min(12.0, max(4.0, 0.5 * n + 2))
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    image = ax.matshow(m, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(names, rotation=90 if max(map(len, names)) > 3 else 0)
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.xaxis.set_label_position("top")
    if n <= 20:
        threshold = m.max() / 2 if m.max() > 0 else 1
        for i in range(n):
            for j in range(n):
                text = f"{m[i, j]:.2f}" if normalize else f"{m[i, j]:.0f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > threshold else "black")
    if title:
        ax.set_title(title, pad=20)
    return _save(fig, path)
