"""Files of an explanation: the per-atom CSV, 2D depictions (PNG, SVG), the offline 3D page, the
trajectory heat map, the attention picture and table, and a summary; each written atomically.

Files in the output folder:

    per_atom.csv            frame, index, element, quantity, value, unit (every per-atom quantity)
    depiction.png / .svg    RDKit 2D coloured by the picture quantity, with a colour bar
    page.html               the 3D page (offline; ``visnet.explain.page``)
    heatmap.png             trajectories: per-atom values over the frames
    uncertainty.png / .svg  committees: per-atom force uncertainty (eV/Å)
    attention.png / .svg    the strongest attention edges over the 2D depiction
    attention.csv           layer, head-mean and head-max weight of every edge, distance
    summary.txt             what ``Explanation.summary`` says
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path

from visnet.explain.colours import colour_scale
from visnet.explain.depiction import depict, molecule_2d
from visnet.explain.explanation import Explanation
from visnet.explain.heatmap import heat_map
from visnet.explain.page import page
from visnet.files.atomic import atomic_open, atomic_write_text
from visnet.files.paths import check_output_folder

__all__ = ["ATTENTION_EDGES", "write_explanation"]

ATTENTION_EDGES = 12  # strongest edges drawn on the attention picture


def _csv_text(rows: list[dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def _write_picture(folder: Path, stem: str, draw: Callable[[str], bytes | str]) -> list[Path]:
    """``draw(kind)`` as ``stem``.png and ``stem``.svg."""
    png, svg = folder / f"{stem}.png", folder / f"{stem}.svg"
    _write_bytes(png, draw("png"))
    atomic_write_text(svg, draw("svg"))
    return [png, svg]


def _attention_rows(e: Explanation) -> list[dict[str, object]]:
    maps = e.attention
    rows = []
    for layer, weights in enumerate(maps.weights):
        for (j, i), w, r in zip(maps.edge_index.T.tolist(), weights, maps.distances.tolist()):
            rows.append(
                {
                    "layer": layer,
                    "centre": i,
                    "neighbour": j,
                    "distance_A": round(r, 6),
                    "mean": float(w.mean()),
                    "max": float(w.max()),
                }
            )
    return rows


def write_explanation(e: Explanation, output_dir: str | os.PathLike) -> list[Path]:
    """Write every file of ``e`` into ``output_dir`` (created); returns the paths written.

    Raises:
        ValueError: ``output_dir`` is a file or not writable.
    """
    folder = check_output_folder(output_dir, "output folder")
    folder.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_text(folder / "per_atom.csv", _csv_text(e.rows()))]
    name, values, unit = e.picture_quantity()
    mean = values.mean(axis=0)
    over = "" if e.num_frames == 1 else f" (mean of {e.num_frames} frames)"
    scale = colour_scale(values, f"{name}\n({unit})")
    mol = molecule_2d(e.numbers, e.positions[0])
    title = f"{e.name}: {name}{over}"
    written += _write_picture(folder, "depiction", lambda kind: depict(mol, mean, scale, kind, title))
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    svg = depict(mol, mean, scale, "svg", title)
    text = page(title, e.summary(), e.numbers, e.symbols, e.positions, e.frames, values, unit, scale, bonds, svg)
    written.append(atomic_write_text(folder / "page.html", text))
    if e.num_frames > 1:
        png = heat_map(values, e.frames, e.symbols, scale, f"{e.name}: {name}", "png")
        _write_bytes(folder / "heatmap.png", png)
        written.append(folder / "heatmap.png")
    if e.force_uncertainty is not None:
        sigma = e.force_uncertainty
        u_scale = colour_scale(sigma, "force uncertainty\n(eV/Å)")
        u_title = f"{e.name}: committee force uncertainty{over}"
        written += _write_picture(
            folder, "uncertainty", lambda kind: depict(mol, sigma.mean(axis=0), u_scale, kind, u_title)
        )
    if e.attention is not None:
        edges = e.attention.strongest(ATTENTION_EDGES)
        a_title = f"{e.name}: {len(edges)} strongest attention edges (mean over layers and heads)"
        written += _write_picture(folder, "attention", lambda kind: depict(mol, None, None, kind, a_title, edges))
        written.append(atomic_write_text(folder / "attention.csv", _csv_text(_attention_rows(e))))
    written.append(atomic_write_text(folder / "summary.txt", e.summary() + "\n"))
    return written
