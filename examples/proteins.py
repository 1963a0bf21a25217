"""Proteins: a capped peptide's energy by AI2BMD-style fragmentation, per-residue energies, short MD.

    python examples/proteins.py [protein.pdb]

``read_protein`` reads PDB/mmCIF through PDBFixer and adds hydrogens; ``peptide_from_sequence``
builds an ACE...NME-capped peptide with RDKit. With ``fragmentation="ai2bmd"`` every residue's
dipeptide unit and every peptide bond's ACE-NME unit go through the model in one batch, plus Amber14
Coulomb + Lennard-Jones between atoms that share no unit.
"""

from __future__ import annotations

import sys

from _settings import pick
from ase import units
from ase.md.verlet import VelocityVerlet

from visnet import ViSNetCalculator
from visnet.proteins.building import peptide_from_sequence
from visnet.proteins.reading import read_protein

protein = (
    read_protein(sys.argv[1]) if len(sys.argv) > 1 else peptide_from_sequence("AGS" if pick(0, 1) else "GYDPETGTWG")
)
protein.calc = ViSNetCalculator(model="organic", fragmentation="ai2bmd", nonbonded="amber14")
print(f"{len(protein)} atoms, energy {protein.get_potential_energy():.3f} eV")
residues = protein.calc.protein_units(protein).topology.residues
for residue, energy in zip(residues, protein.calc.results["residue_energies"]):
    print(f"  {residue.label}: {energy:.3f} eV")

dyn = VelocityVerlet(protein, 0.5 * units.fs)
dyn.run(pick(200, 2))
print(f"after {dyn.nsteps} NVE steps: energy {protein.get_potential_energy():.3f} eV")
