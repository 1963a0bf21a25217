"""The work of one process of a screen, as a Lightning module for ``Trainer.predict``: Lightning
launches the processes (``devices`` × ``num_nodes``; DDP over gloo on CPU, NCCL on GPUs; torchrun
and SLURM detected), gives each its device and rank, and this module does the rest.

Each rank takes the chunks ``c`` with ``c % world_size == rank`` (deterministic, and the same
whoever computed the chunks before a restart), skips those already in the shard store, and for
each: reads it (``streaming.read_chunk``), checks, relaxes if asked, predicts ``batch_size``
structures per model call, and writes its shard. Every chunk is computed by one rank with the
same batches, so the rows do not depend on the number of processes.

Why ``Trainer.predict`` with a dataset of chunk numbers rather than of structures: a chunk is
the unit that is written, resumed and assigned, and reading it inside ``predict_step`` keeps one
chunk in memory; Lightning's ``DistributedSampler`` does not apply to a stream, so the
assignment is ours (and the same on every restart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from visnet.prediction.inputs import PendingStructure, check_structures
from visnet.prediction.predict import evaluate_batch, make_result
from visnet.prediction.property_models import PropertyModel, load_property_models, select_models
from visnet.prediction.relax import relax_structures, relaxation_model
from visnet.prediction.shard_rows import RowLayout
from visnet.prediction.shards import ShardStore
from visnet.prediction.streaming import read_chunk

__all__ = ["ChunkNumbers", "ScreenOptions", "ScreeningModule", "assigned_chunks"]


@dataclass(frozen=True)
class ScreenOptions:
    """What every rank needs to compute a chunk (see ``visnet.screen`` for each)."""

    model: Any
    properties: tuple[str, ...] | None
    batch_size: int
    dtype: str
    accel: str
    trust_package: bool
    relax: bool = False
    relax_fmax: float = 0.05
    relax_steps: int = 200


def assigned_chunks(chunks: int, rank: int, world_size: int, done: set[int]) -> list[int]:
    """The chunks rank ``rank`` of ``world_size`` computes: ``c % world_size == rank``, not done."""
    return [c for c in range(rank, chunks, world_size) if c not in done]


class ChunkNumbers(IterableDataset):
    """The chunk numbers a rank computes, in order (each one item; the reading is ``predict_step``'s)."""

    def __init__(self, chunks: list[int]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[int]:
        return iter(self.chunks)


class ScreeningModule(L.LightningModule):
    """Computes and writes the shards of this rank's chunks (no parameters: the models are
    resolved on the rank's device when prediction starts).

    Args:
        store: the run's shard store.
        options: models and options.
        layout: the shards' columns.
        progress: called on rank 0 after each shard it writes with the number of structures
            done so far by all ranks (counted from the shard files).
        shard_hook: called with the chunk number after each shard this process writes.
        models: already resolved models to use when they sit on the rank's device.
    """

    def __init__(
        self,
        store: ShardStore,
        options: ScreenOptions,
        layout: RowLayout,
        progress: Callable[[int], None] | None = None,
        shard_hook: Callable[[int], None] | None = None,
        models: list[PropertyModel] | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.options = options
        self.layout = layout
        self.progress = progress
        self.shard_hook = shard_hook
        self.computed = 0  # structures this process computed
        self._models = models
        self._want: set[str] = set()

    def predict_dataloader(self) -> DataLoader:
        chunks = assigned_chunks(
            self.store.plan.chunks, self.trainer.global_rank, self.trainer.world_size, self.store.done()
        )
        return DataLoader(ChunkNumbers(chunks), batch_size=None)

    def on_predict_start(self) -> None:
        device = self.trainer.strategy.root_device
        o = self.options
        if self._models is None or any(m.model.device != device for m in self._models):
            self._models = load_property_models(o.model, device, o.dtype, o.trust_package, accel=o.accel)
        self._models, self._want = select_models(self._models, o.properties)

    def predict_step(self, chunk: int, batch_idx: int) -> None:
        chunk = int(chunk)
        structures = read_chunk(self.store.plan, chunk)
        self._compute(structures)
        units = {name: spec.unit for m in self._models for name, spec in m.outputs.items()}
        indices = self.store.plan.chunk_range(chunk)
        self.store.write(chunk, self.layout.table([make_result(k, s, units) for k, s in zip(indices, structures)]))
        self.computed += len(structures)
        if self.shard_hook is not None:
            self.shard_hook(chunk)
        if self.progress is not None and self.trainer.is_global_zero:
            self.progress(sum(len(self.store.plan.chunk_range(c)) for c in self.store.done()))

    def _compute(self, structures: list[PendingStructure]) -> None:
        """Properties of the chunk's structures (failures recorded in each structure's error)."""
        o = self.options
        elements = frozenset.intersection(*(m.elements for m in self._models))
        check_structures(structures, elements, "skip")
        if o.relax:
            relax_structures(structures, relaxation_model(self._models), o.relax_fmax, o.relax_steps, "skip", False)
        good = [s for s in structures if s.error is None]
        for start in range(0, len(good), o.batch_size):
            evaluate_batch(self._models, good[start : start + o.batch_size], self._want, "skip")

    def on_predict_end(self) -> None:
        self.trainer.strategy.barrier("screen-shards-written")
