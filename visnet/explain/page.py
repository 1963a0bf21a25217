"""A self-contained, offline 3D page of per-atom values: one HTML file, no network at view time.

py3Dmol (and 3Dmol.js pages in general) load 3Dmol.js from a CDN when the page is opened, and the
py3Dmol wheel does not ship the script: offline such a page shows nothing. So the page draws the
molecule itself: ~100 lines of plain JavaScript on a 2D canvas (ball and stick, depth-sorted,
shaded spheres; drag to rotate, wheel to zoom, hover for the atom's value, a slider over the
frames of a trajectory), with the colour bar in CSS and the RDKit 2D depiction (SVG) inline
beneath it, which is also what a browser without JavaScript shows. Nothing is fetched.
"""

from __future__ import annotations

import html
import json

import numpy as np
from ase.data import covalent_radii

from visnet.explain.colours import ColourScale

__all__ = ["page"]

_SCRIPT = r"""
const data = JSON.parse(document.getElementById("data").textContent);
const canvas = document.getElementById("view"), ctx = canvas.getContext("2d");
const tip = document.getElementById("tip"), slider = document.getElementById("frame");
let R = [[1, 0, 0], [0, 1, 0], [0, 0, 1]], zoom = 1, frame = 0, drag = null, shown = [];
function mul(A, B) { return A.map(r => [0, 1, 2].map(j => r[0] * B[0][j] + r[1] * B[1][j] + r[2] * B[2][j])); }
function turn(ax, ay) {
  const cx = Math.cos(ax), sx = Math.sin(ax), cy = Math.cos(ay), sy = Math.sin(ay);
  R = mul(mul([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], [[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]), R);
}
function project() {
  const s = zoom * 0.42 * Math.min(canvas.width, canvas.height) / data.extent;
  return data.positions[frame].map((p, i) => {
    const q = R.map(r => r[0] * p[0] + r[1] * p[1] + r[2] * p[2]);
    return {i: i, x: canvas.width / 2 + s * q[0], y: canvas.height / 2 - s * q[1], z: q[2], r: s * data.radii[i]};
  });
}
function draw() {
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  shown = project();
  ctx.strokeStyle = "#777777";
  ctx.lineWidth = 4;
  for (const [a, b] of data.bonds) {
    ctx.beginPath(); ctx.moveTo(shown[a].x, shown[a].y); ctx.lineTo(shown[b].x, shown[b].y); ctx.stroke();
  }
  for (const p of [...shown].sort((a, b) => a.z - b.z)) {
    const g = ctx.createRadialGradient(p.x - p.r / 3, p.y - p.r / 3, p.r / 8, p.x, p.y, p.r);
    g.addColorStop(0, "#ffffff");
    g.addColorStop(0.35, data.colours[frame][p.i]);
    g.addColorStop(1, "#333333");
    ctx.fillStyle = g;
    ctx.beginPath(); ctx.arc(p.x, p.y, p.r, 0, 2 * Math.PI); ctx.fill();
  }
  document.getElementById("frame-label").textContent = data.frames.length > 1 ? "frame " + data.frames[frame] : "";
}
canvas.addEventListener("mousedown", e => { drag = [e.offsetX, e.offsetY]; });
window.addEventListener("mouseup", () => { drag = null; });
canvas.addEventListener("mousemove", e => {
  if (drag) { turn((e.offsetY - drag[1]) / 120, (e.offsetX - drag[0]) / 120); drag = [e.offsetX, e.offsetY]; draw(); }
  const hit = shown.filter(p => Math.hypot(p.x - e.offsetX, p.y - e.offsetY) < p.r).sort((a, b) => b.z - a.z)[0];
  tip.textContent = hit ? data.symbols[hit.i] + hit.i + ": " + data.values[frame][hit.i].toPrecision(4) + " " + data.unit : "";
});
canvas.addEventListener("wheel", e => { e.preventDefault(); zoom *= e.deltaY < 0 ? 1.1 : 1 / 1.1; draw(); }, {passive: false});
if (data.frames.length > 1) {
  slider.max = data.frames.length - 1;
  slider.addEventListener("input", () => { frame = Number(slider.value); draw(); });
} else {
  slider.style.display = "none";
}
turn(0.35, 0.5);
draw();
document.body.dataset.status = "drawn";
"""

_STYLE = """
body { font-family: sans-serif; margin: 16px; color: #222; background: #fff; }
#row { display: flex; gap: 16px; align-items: stretch; }
#view { border: 1px solid #ccc; cursor: grab; }
#bar { width: 24px; border: 1px solid #999; }
#ticks { display: flex; flex-direction: column; justify-content: space-between; font-size: 13px; }
#tip { height: 1.2em; font-family: monospace; }
pre { background: #f6f6f6; padding: 8px; white-space: pre-wrap; }
"""


def _gradient(scale: ColourScale, stops: int = 11) -> str:
    """CSS linear-gradient (top = vmax) of the scale."""
    values = np.linspace(scale.vmax, scale.vmin, stops)
    colours = scale.hex(values)
    return (
        "linear-gradient(to bottom, "
        + ", ".join(f"{c} {100 * k / (stops - 1):.0f}%" for k, c in enumerate(colours))
        + ")"
    )


def page(
    title: str,
    summary: str,
    numbers: np.ndarray,
    symbols: list[str],
    positions: np.ndarray,
    frames: np.ndarray,
    values: np.ndarray,
    unit: str,
    scale: ColourScale,
    bonds: list[tuple[int, int]],
    depiction_svg: str,
) -> str:
    """The HTML text of the page.

    Args:
        positions: (F, N, 3) Å. values: (F, N) what the atoms are coloured by, in ``unit``.
        frames: (F,) frame numbers. bonds: atom pairs (from the 2D depiction's molecule).
        depiction_svg: the RDKit SVG shown under the 3D view.
    """
    centred = positions - positions.mean(axis=1, keepdims=True)
    radii = 0.3 + 0.35 * covalent_radii[np.asarray(numbers)]
    extent = float(np.linalg.norm(centred, axis=-1).max() + radii.max()) or 1.0
    data = {
        "symbols": symbols,
        "positions": np.round(centred, 4).tolist(),
        "radii": np.round(radii, 3).tolist(),
        "extent": extent,
        "bonds": [list(b) for b in bonds],
        "frames": [int(f) for f in frames],
        "values": values.tolist(),
        "colours": [scale.hex(row) for row in values],
        "unit": unit,
    }
    payload = json.dumps(data).replace("</", "<\\/")
    ticks = "".join(f"<span>{v:+.3g}</span>" for v in reversed(scale.ticks()))
    svg = depiction_svg[depiction_svg.find("<svg") :]  # drop the XML declaration
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body data-status="loading">
<h2>{html.escape(title)}</h2>
<pre>{html.escape(summary)}</pre>
<div id="row">
<canvas id="view" width="640" height="520"></canvas>
<div id="bar" style="background: {_gradient(scale)}"></div>
<div id="ticks">{ticks}</div>
<div><b>{html.escape(scale.label.replace(chr(10), " "))}</b></div>
</div>
<div><input id="frame" type="range" min="0" max="0" value="0"> <span id="frame-label"></span></div>
<div id="tip"></div>
<p>Drag to rotate, wheel to zoom, point at an atom for its value.</p>
<noscript><p>JavaScript is off: the 2D depiction below shows the same values.</p></noscript>
<h3>2D depiction</h3>
{svg}
<script type="application/json" id="data">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
