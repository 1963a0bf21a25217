"""2D depictions (RDKit) of a molecule coloured by per-atom values, with a colour bar, and with the
strongest attention edges drawn over it; PNG (Cairo) and SVG from the same drawing code."""

from __future__ import annotations

from typing import Any

import numpy as np

from visnet.explain.colours import ColourScale

__all__ = ["BAR_WIDTH", "HEIGHT", "WIDTH", "depict", "molecule_2d"]

WIDTH, HEIGHT = 560, 480  # pixels of the molecule panel
BAR_WIDTH = 150  # pixels right of it: the colour bar and its labels
_BAR_STEPS = 64


def molecule_2d(numbers: np.ndarray, positions: np.ndarray) -> Any:
    """An RDKit molecule of the atoms (N,) at positions (N, 3) Å: bonds from the distances
    (``rdDetermineBonds.DetermineConnectivity``), 2D coordinates for drawing; atoms keep their order."""
    try:
        from rdkit import Chem
        from rdkit.Chem import rdDepictor, rdDetermineBonds
        from rdkit.Geometry import Point3D
    except ImportError as err:  # pragma: no cover - rdkit is in the dev and explain extras
        raise ImportError("the pictures of visnet explain need RDKit: pip install 'visnet[explain]'") from err

    mol = Chem.RWMol()
    for z in numbers:
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    conformer = Chem.Conformer(len(numbers))
    for i, xyz in enumerate(np.asarray(positions, dtype=float)):
        conformer.SetAtomPosition(i, Point3D(*xyz))
    mol.AddConformer(conformer, assignId=True)
    rdDetermineBonds.DetermineConnectivity(mol)
    mol = mol.GetMol()
    mol.UpdatePropertyCache(strict=False)
    rdDepictor.Compute2DCoords(mol)
    return mol


def _drawer(kind: str) -> Any:
    from rdkit.Chem.Draw import rdMolDraw2D

    make = rdMolDraw2D.MolDraw2DCairo if kind == "png" else rdMolDraw2D.MolDraw2DSVG
    drawer = make(WIDTH + BAR_WIDTH, HEIGHT, WIDTH, HEIGHT)
    options = drawer.drawOptions()
    options.addAtomIndices = True
    options.setBackgroundColour((1, 1, 1, 1))
    options.clearBackground = True
    return drawer


def _colour_bar(drawer: Any, scale: ColourScale) -> None:
    """The scale as a vertical bar right of the molecule panel, with tick labels and caption (pixels)."""
    from rdkit.Geometry import Point2D

    left, right, top, bottom = WIDTH + 20, WIDTH + 44, 50, HEIGHT - 50
    drawer.SetFillPolys(True)
    step = (bottom - top) / _BAR_STEPS
    for k in range(_BAR_STEPS):
        value = scale.vmax - (k + 0.5) / _BAR_STEPS * (scale.vmax - scale.vmin)
        drawer.SetColour(tuple(scale.rgb(value)))
        drawer.DrawRect(Point2D(left, top + k * step), Point2D(right, top + (k + 1) * step + 0.5), True)
    drawer.SetColour((0.0, 0.0, 0.0))
    drawer.SetFontSize(13)
    for value in scale.ticks():
        y = bottom - (value - scale.vmin) / (scale.vmax - scale.vmin) * (bottom - top)
        drawer.DrawString(f"{value:+.3g}", Point2D(right + 6, y), 1, True)
    for k, line in enumerate(scale.label.split("\n")):
        drawer.DrawString(line, Point2D(WIDTH + BAR_WIDTH / 2, 14 + 15 * k), 0, True)


def _edges(drawer: Any, mol: Any, edges: list[tuple[int, int, float]]) -> None:
    """Attention edges i–j over the molecule: width and darkness grow with |a| (strongest first)."""
    if not edges:
        return
    from rdkit.Geometry import Point2D

    strongest = max(abs(a) for _, _, a in edges) or 1.0
    conformer = mol.GetConformer()
    for i, j, a in edges:
        share = abs(a) / strongest
        drawer.SetColour((0.45, 0.1, 0.6, 0.25 + 0.6 * share))
        drawer.SetLineWidth(int(round(2 + 6 * share)))
        pi, pj = conformer.GetAtomPosition(i), conformer.GetAtomPosition(j)
        drawer.DrawLine(Point2D(pi.x, pi.y), Point2D(pj.x, pj.y))


def depict(
    mol: Any,
    values: np.ndarray | None,
    scale: ColourScale | None,
    kind: str,
    title: str = "",
    edges: list[tuple[int, int, float]] | None = None,
) -> bytes | str:
    """The molecule drawn with atoms highlighted in the colours of ``values`` (N,) on ``scale``,
    a colour bar and optionally attention ``edges`` [(i, j, a)].

    Args:
        mol: from ``molecule_2d``. kind: "png" (returns bytes) or "svg" (returns text).
        values, scale: per-atom values and their scale; None for no colouring (edges only).
        title: the legend under the molecule.
    """
    drawer = _drawer(kind)
    colours, radii = {}, {}
    if values is not None and scale is not None:
        colours = {i: tuple(c) for i, c in enumerate(scale.rgb(values))}
        radii = {i: 0.45 for i in range(mol.GetNumAtoms())}
    drawer.DrawMolecule(
        mol,
        highlightAtoms=list(colours),
        highlightAtomColors=colours,
        highlightAtomRadii=radii,
        highlightBonds=[],
        legend=title,
    )
    _edges(drawer, mol, edges or [])
    if scale is not None:
        _colour_bar(drawer, scale)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()
