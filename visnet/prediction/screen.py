"""``visnet.screen``: ``visnet.predict`` over collections too large for memory, written to a file.

    >>> import visnet
    >>> visnet.screen("frames.extxyz", "results.csv", model="qm9")          # millions of frames
    >>> visnet.screen(["conformers/", "more/*.xyz"], "results.parquet", devices=4)

The inputs (files, directories, globs; see ``visnet.prediction.collection``) are counted once and
cut into chunks of ``chunk_size`` structures. Chunks are read one at a time (memory does not grow
with the collection), predicted ``batch_size`` structures per model call, and each finished chunk
is written atomically as a shard in ``<output>.shards/``. A killed run resumes where it stopped
when the same call is made again: no row is lost, duplicated or computed twice; a rerun with other
inputs, models or options is refused. ``devices`` × ``num_nodes`` processes (Lightning DDP) share
the chunks. When every chunk is done, rank 0 writes ``output`` (one row per structure, in input
order, the same whatever the number of processes and restarts) and ``<output>.errors.csv``.

A frame that cannot be read, an element the model lacks or a failed model call gives that row an
``error`` (listed in the errors file); the run goes on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from visnet.accel.cache import content_hash
from visnet.devices import resolve_device
from visnet.inference.resolve import resolve_accel
from visnet.prediction.collection import expand_inputs, make_plan
from visnet.prediction.inputs import as_list
from visnet.prediction.property_models import PropertyModel, load_property_models, select_models
from visnet.prediction.screen_output import OUTPUT_SUFFIXES, errors_path, write_errors, write_output

if TYPE_CHECKING:
    from visnet.prediction.screening_module import ScreenOptions
    from visnet.prediction.shards import ShardStore

__all__ = ["DEFAULT_CHUNK_SIZE", "ScreenSummary", "require_pyarrow", "screen"]

DEFAULT_CHUNK_SIZE = 1000
# Collections from which the progress bar shows when ``progress=None``.
PROGRESS_MIN_STRUCTURES = 100


@dataclass(frozen=True)
class ScreenSummary:
    """What a screen did (as seen by this process).

    Attributes:
        output: the results file (None on ranks other than 0: rank 0 writes it).
        structures: structures in the collection (= rows of the output).
        failed: rows with an error (listed in ``errors_file``); -1 on ranks other than 0.
        computed: structures this process computed in this call (0 when all were done before).
        errors_file: ``<output>.errors.csv``, None when nothing failed (or not rank 0).
        rank: this process's global rank.
        world_size: the number of processes.
    """

    output: Path | None
    structures: int
    failed: int
    computed: int
    errors_file: Path | None
    rank: int
    world_size: int


def require_pyarrow() -> None:
    """ImportError with the install hint when pyarrow (the shards' format) is missing."""
    if importlib.util.find_spec("pyarrow") is None:
        raise ImportError("visnet.screen writes Parquet shards with pyarrow: pip install 'visnet[screen]'")


def _check_arguments(output: Path, batch_size: int, chunk_size: int, devices: int, num_nodes: int) -> None:
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"output {output}: a screen writes {', '.join(OUTPUT_SUFFIXES)} files")
    if output.is_dir():
        raise ValueError(f"output {output} is a folder, expected a file name")
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size), ("devices", devices)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")


def _model_fingerprint(models: list[PropertyModel]) -> list[list[str]]:
    """[label, content hash] of each model (a package: its label only), for the manifest."""
    out = []
    for m in models:
        eager = m.model.eager_model
        out.append([m.label, content_hash(eager) if eager is not None else "exported package"])
    return out


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's start-up lines ("GPU available: ...") and its advice on data-loader workers
    (a chunk number needs no worker) would bury the progress bar."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*predict returned None.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _trainer(device: torch.device, devices: int, num_nodes: int) -> Any:
    import lightning as L

    parallel = devices * num_nodes > 1
    return L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=devices,
        num_nodes=num_nodes,
        strategy="ddp" if parallel else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=False,  # forces need autograd
    )


def screen(
    inputs: str | Path | Sequence[str | Path],
    output: str | Path,
    model: Any = "default",
    properties: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    devices: int = 1,
    num_nodes: int = 1,
    device: str | torch.device | None = None,
    dtype: str = "float64",
    accel: str = "eager",
    trust_package: bool = False,
    relax: bool = False,
    relax_fmax: float = 0.05,
    relax_steps: int = 200,
    progress: bool | None = None,
    keep_shards: bool = False,
    on_shard: Callable[[int], None] | None = None,
) -> ScreenSummary:
    """Predict every structure of a collection of files into ``output``, streamed and resumable.

    Args:
        inputs: structure files (every frame is a structure), directories (their files,
            recursively, sorted by path) and globs (``"data/**/*.xyz"``, matches sorted), or a
            list of these (in that order).
        output: the results file: ``.csv`` (as ``visnet.write_csv`` writes it), ``.parquet`` (the
            same columns) or ``.extxyz`` (geometry, properties in ``info`` and per-atom ones such
            as forces in ``arrays``). Its shards live in ``<output>.shards/`` until it is written.
        model: as for ``visnet.predict``: a model file, bundled name ("default"), bundle ("qm9"),
            run folder or list of these.
        properties: names to predict (None: all the models predict), as for ``visnet.predict``.
        batch_size: structures per model call.
        chunk_size: structures per shard (the unit written, resumed and shared out). Part of
            the run: a rerun with another chunk size is refused.
        devices: processes per node (GPUs with a CUDA device, else CPU processes).
        num_nodes: nodes (launched by SLURM/torchrun, see docs/tutorials/multi-gpu.md);
            ``output`` must then be on a file system every node sees.
        device: "cpu", "cuda" or None (CUDA when available).
        dtype: "float64" (default) or "float32".
        trust_package: load exported packages (``.pt2``) not built on this machine.
        relax: first relax each structure with the energy model (ASE BFGS), as ``visnet.predict``.
        relax_fmax: the relaxation's force threshold, eV/Å.
        relax_steps: the relaxation's maximum number of steps.
        accel: "eager" (default), "compile" or "export" (the exported package, built first when
            missing). "auto" means "eager" here: a switch of form in the middle of a run would
            make rows depend on when it happened.
        progress: a progress bar with structures/s on rank 0 (None: 100+ structures).
        keep_shards: keep ``<output>.shards/`` after the output is written (default: removed).
        on_shard: called with the chunk number after each shard this process writes.

    Returns:
        A ``ScreenSummary``. With several processes launched by Lightning the caller's code runs
        in each of them (guard scripts with ``if __name__ == "__main__":``); only rank 0's
        summary names the output.

    Raises:
        ValueError: bad arguments, a suffix other than .csv/.parquet/.extxyz, an input that is no
            file/directory/glob, a shard store of another run at ``<output>.shards/``.
        FileNotFoundError: an input file or model file that does not exist, a glob without matches.

    Example:
        ```python
        import visnet

        summary = visnet.screen("frames.extxyz", "results.parquet", model="default", chunk_size=1000)
        print(summary.structures, summary.failed)   # killed? the same call again resumes
        ```
    """
    output = Path(output)
    _check_arguments(output, batch_size, chunk_size, devices, num_nodes)
    require_pyarrow()
    # Lightning and pyarrow are imported only when screening
    from visnet.prediction.screening_module import ScreenOptions
    from visnet.prediction.shard_rows import layout_for
    from visnet.prediction.shards import ShardStore, shards_folder

    form = resolve_accel("eager" if accel == "auto" else accel)
    files = expand_inputs(as_list(inputs))
    models, want = select_models(load_property_models(model, "cpu", dtype, trust_package, accel="eager"), properties)
    layout = layout_for(models, want, geometry=output.suffix.lower() == ".extxyz")
    wanted = None if properties is None else tuple([properties] if isinstance(properties, str) else properties)
    options = ScreenOptions(model, wanted, batch_size, dtype, form, trust_package, relax, relax_fmax, relax_steps)
    run = {
        "inputs": [[f.path, f.size, f.mtime_ns] for f in files],
        "model": _model_fingerprint(models),
        "options": {
            "properties": sorted(want),
            "columns": layout.to_json(),
            "batch_size": batch_size,
            "chunk_size": chunk_size,
            "dtype": dtype,
            "accel": form,
            "relax": [relax, relax_fmax, relax_steps] if relax else False,
        },
    }
    store = ShardStore.open(shards_folder(output), run, lambda: make_plan(files, chunk_size))
    place = resolve_device(device)
    reuse = models if place.type == "cpu" and form == "eager" else None  # else each rank resolves its own
    return _run(
        store,
        options,
        layout,
        output,
        reuse,
        place,
        devices,
        num_nodes,
        progress,
        keep_shards,
        on_shard,
    )


def _run(
    store: ShardStore,
    options: ScreenOptions,
    layout: Any,
    output: Path,
    models: list[PropertyModel] | None,
    device: torch.device,
    devices: int,
    num_nodes: int,
    progress: bool | None,
    keep_shards: bool,
    on_shard: Callable[[int], None] | None,
) -> ScreenSummary:
    """Compute the missing shards on every rank, then (rank 0) write the output and errors files."""
    from tqdm.auto import tqdm

    from visnet.prediction.screening_module import ScreeningModule

    plan = store.plan
    show = plan.total >= PROGRESS_MIN_STRUCTURES if progress is None else bool(progress)
    done_before = sum(len(plan.chunk_range(c)) for c in store.done())
    with _quiet_lightning():
        trainer = _trainer(device, devices, num_nodes)
        bar = tqdm(
            total=plan.total,
            initial=done_before,
            desc="screening",
            unit=" structures",
            disable=not (show and trainer.is_global_zero),
            smoothing=0.1,
        )
        with bar:
            module = ScreeningModule(
                store,
                options,
                layout,
                lambda n: bar.update(n - bar.n),
                on_shard,
                models,
            )
            trainer.predict(module, return_predictions=False)
    rank, world = trainer.global_rank, trainer.world_size
    if not trainer.is_global_zero:
        return ScreenSummary(None, plan.total, -1, module.computed, None, rank, world)
    write_output(store.tables(), layout, output)
    failed = write_errors((t.select(["index", "source", "error"]) for t in store.tables()), errors_path(output))
    if not keep_shards:
        shutil.rmtree(store.folder)
    errors_file = errors_path(output) if failed else None
    return ScreenSummary(output, plan.total, failed, module.computed, errors_file, rank, world)
