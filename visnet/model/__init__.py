"""The ViSNet model and its building blocks."""

from visnet.model.geometry import EdgeGeometry, edge_geometry, rejection_dot, spherical_harmonics, vector_rejection
from visnet.model.heads import HEADS, Atomref
from visnet.model.radial import CosineCutoff, ExpNormalSmearing, GaussianSmearing
from visnet.model.representation import ViSNetRepresentation
from visnet.model.visnet import ViSNet

__all__ = [
    "Atomref",
    "CosineCutoff",
    "EdgeGeometry",
    "ExpNormalSmearing",
    "GaussianSmearing",
    "HEADS",
    "ViSNet",
    "ViSNetRepresentation",
    "edge_geometry",
    "rejection_dot",
    "spherical_harmonics",
    "vector_rejection",
]
