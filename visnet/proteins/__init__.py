"""Proteins in: PDB/mmCIF reading, peptides from sequence, residue topology, AI2BMD units and caps,
Amber non-bonded parameters. No model calls (the evaluation lives in ``visnet.inference``)."""
