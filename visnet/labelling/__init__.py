"""Labelling: energies and forces (and stress) of structures by GFN2-xTB (tblite) or any ASE
calculator, written as extended XYZ; resumable, parallel, failures listed beside the output.

    from visnet.labelling import label
    report = label("frames.xyz", "labelled.extxyz", method="gfn2-xtb", workers=2)
"""

from visnet.labelling.calculators import make_calculator
from visnet.labelling.label import LabelReport, label

__all__ = ["LabelReport", "label", "make_calculator"]
