"""The ViSNet model and its building blocks."""

from visnet.model.forces import energy_and_derivatives, symmetric_strain
from visnet.model.geometry import EdgeGeometry, edge_geometry, rejection_dot, spherical_harmonics, vector_rejection
from visnet.model.heads import HEADS, Head
from visnet.model.priors import Atomref, IsolatedAtomReference
from visnet.model.radial import CosineCutoff, ExpNormalSmearing, GaussianSmearing, PolynomialCutoff
from visnet.model.representation import ViSNetRepresentation
from visnet.model.visnet import ViSNet

__all__ = [
    "Atomref",
    "CosineCutoff",
    "EdgeGeometry",
    "ExpNormalSmearing",
    "GaussianSmearing",
    "HEADS",
    "Head",
    "IsolatedAtomReference",
    "PolynomialCutoff",
    "ViSNet",
    "ViSNetRepresentation",
    "edge_geometry",
    "energy_and_derivatives",
    "rejection_dot",
    "spherical_harmonics",
    "symmetric_strain",
    "vector_rejection",
]
