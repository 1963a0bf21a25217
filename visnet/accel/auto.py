"""``accel="auto"``: a model that runs eagerly until its exported package is ready, then switches.

The rule (``AutoPolicy``; docs/tutorials/export.md, "The rule of auto"):

* The job's eager time is estimated from its calls so far: the time spent plus the last call's
  time × the calls the caller announced (``expect_calls``: an MD run's steps, a prediction's
  batches); without an announcement, the time spent so far. Loading a cached package is decided
  from the first call on (it is cheap), building one from the second (the first carries one-off costs).
* At ``load_seconds`` (default 2 s) it looks in the cache (``visnet.accel.cache``): a package
  for this model, dtype, device, torch and machine is loaded in a background thread and used from
  the call after it is ready. A single energy call never pays the ~1–2 s of CPU a load costs.
* At ``build_seconds`` (default 10 s; ``$VISNET_ACCEL_BUILD_SECONDS``) with no package, one is
  built in a background process at the lowest CPU priority (``visnet.accel.build.start_build``;
  about a minute of one core), which keeps going after the run ends; this run stays eager and
  switches when the package is ready. The next run of the model finds it.
* Every fault (no C++ compiler, an export that fails, a full disk, an unwritable cache, a package
  that does not load) leaves the model eager with one ``FastPathWarning`` line, never an error.

Results after the switch equal the eager model's to float precision (the package is the same
function, compiled); the switch is printed once to stderr.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from visnet.accel.build import EXIT_BUSY, start_build
from visnet.accel.cache import CacheKey, FastPathCache, cache_key, content_hash
from visnet.accel.compile import compile_available
from visnet.accel.exported import ExportedViSNet, load_exported
from visnet.model.interface import ModelForm
from visnet.neighbors import NeighborList

__all__ = ["BUILD_SECONDS_ENV", "AutoPolicy", "AutoViSNet", "FastPathWarning", "exportable"]

BUILD_SECONDS_ENV = "VISNET_ACCEL_BUILD_SECONDS"
# An exported graph holds every edge's activations at once (it does not slice edges): calls whose
# edge activations would pass this many bytes run eagerly (the eager model slices), as in
# visnet.accel.compile; without a neighbour list to count, systems above LARGE_ATOMS do.
EXPORTED_EDGE_BYTES = 2e9
LARGE_ATOMS = 2000


class FastPathWarning(UserWarning):
    """The fast path is off for this run (the model runs eagerly): one line saying why."""


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class AutoPolicy:
    """When ``AutoViSNet`` looks for, builds and polls for a package (seconds of the job's eager time).

    Attributes:
        load_seconds: use a cached package once the job is expected to take this long eagerly.
        build_seconds: build a package (in the background) once the job is expected to take this
            long eagerly (default ``$VISNET_ACCEL_BUILD_SECONDS`` or 10).
        poll_seconds: how often (wall time) to check whether a background build finished.
    """

    load_seconds: float = 2.0
    build_seconds: float = field(default_factory=lambda: _env_seconds(BUILD_SECONDS_ENV, 10.0))
    poll_seconds: float = 1.0


def exportable(model: nn.Module) -> bool:
    """Whether ``model`` can have an exported package: an eager energy model reduced by a sum."""
    from visnet.model import ViSNet

    return isinstance(model, ViSNet) and bool(model.predicts_energy) and model.reduce_op == "sum"


# The launcher starts a build and returns something with ``poll() -> int | None``; the loader
# turns a package path into a runnable model. Tests replace both.
Launcher = Callable[[FastPathCache, CacheKey, nn.Module, str], Any]
Loader = Callable[[Path, torch.device, torch.dtype], nn.Module]


def _load_package(path: Path, device: torch.device, dtype: torch.dtype) -> ExportedViSNet:
    return load_exported(path, device=device, dtype=dtype)


class AutoViSNet(nn.Module):
    """An eager ViSNet that switches to its exported package when one is ready (``accel="auto"``).

    Implements ``visnet.model.interface.AtomisticModel``: the call and every attribute are the
    eager model's (``form`` "eager": it holds the weights; ``active_form`` says which form runs).

    Args:
        model: the eager energy model (a private copy; not copied again).
        label: the model's name in messages.
        cache: the package cache (default: ``$VISNET_CACHE_DIR``).
        policy: when to load, build and poll (``AutoPolicy``).
        launcher / loader: start a background build / load a package (defaults:
            ``visnet.accel.build.start_build`` and ``visnet.accel.exported.load_exported``).
        verbose: print the switch (one line, stderr).
    """

    form: ClassVar[ModelForm] = "eager"

    def __init__(
        self,
        model: nn.Module,
        label: str = "",
        *,
        cache: FastPathCache | None = None,
        policy: AutoPolicy | None = None,
        launcher: Launcher | None = None,
        loader: Loader | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.label = label or type(model).__name__
        self.cache = cache or FastPathCache()
        self.policy = policy or AutoPolicy()
        self.launcher = launcher or start_build
        self.loader = loader or _load_package
        self.verbose = verbose
        self._reset()

    def _reset(self) -> None:
        """Runtime state: nothing decided, nothing running (also after a copy)."""
        self.calls = 0  # eager calls so far
        self.total_calls = 0  # eager and exported
        self.eager_seconds = 0.0
        self.last_call_seconds = 0.0
        self.planned_calls: int | None = None
        self.state = "eager"  # eager | waiting (a build runs) | loading | fast | off
        self.switched_after: int | None = None  # eager calls before the switch
        self.switched_at: float | None = None  # time.perf_counter() of the switch
        self.built_here = False  # this model started the build it switched to
        self._key: CacheKey | None = None
        self._build: Any = None
        self._build_started = 0.0
        self._next_poll = 0.0
        self._loading: concurrent.futures.Future | None = None
        self._loading_path: Path | None = None
        self._fast: nn.Module | None = None
        self._warned = False
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """A copy (deepcopy, pickle) starts afresh: eager, nothing building or loading."""
        state = self.__dict__.copy()
        for name in ("_build", "_loading", "_fast", "_lock"):
            state[name] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        keep = self.calls, self.eager_seconds, self.last_call_seconds, self.planned_calls
        self._reset()
        self.calls, self.eager_seconds, self.last_call_seconds, self.planned_calls = keep

    # ----------------------------------------------------------------- the model's attributes
    @property
    def cutoff(self) -> float:
        return self.model.cutoff

    @property
    def max_z(self) -> int:
        return self.model.max_z

    @property
    def elements(self) -> frozenset[int]:
        return self.model.elements

    @property
    def metadata(self) -> dict[str, Any]:
        return self.model.metadata

    @property
    def hparams(self) -> dict[str, Any]:
        return self.model.hparams

    @property
    def output_key(self) -> str:
        return self.model.output_key

    @property
    def predicts_energy(self) -> bool:
        return self.model.predicts_energy

    @property
    def per_atom_output(self) -> bool:
        return self.model.per_atom_output

    @property
    def vector_output(self) -> bool:
        return self.model.vector_output

    @property
    def derivative(self) -> bool:
        return self.model.derivative

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def eager_model(self) -> nn.Module:
        """The ``ViSNet`` holding the weights (what ``save_model`` writes)."""
        return self.model

    @property
    def active_form(self) -> str:
        """ "exported" once switched to the package, else "eager"."""
        return "exported" if self._fast is not None else "eager"

    def train(self, mode: bool = True) -> AutoViSNet:
        if mode:
            raise RuntimeError("an accel='auto' model is for inference; train the eager model")
        return super().train(False)

    def expect_calls(self, calls: int) -> None:
        """Announce that the job will make about ``calls`` more calls (an MD run's steps, a
        prediction's batches): the policy then judges the whole job from its first calls."""
        self.planned_calls = self.calls + max(int(calls), 0)

    # ----------------------------------------------------------------- the call
    def forward(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        pbc: Tensor | None = None,
        *,
        compute_forces: bool | None = None,
        compute_stress: bool = False,
        neighbors: NeighborList | None = None,
        inputs_checked: bool = False,
    ) -> dict[str, Tensor]:
        """As ``ViSNet.forward`` (z (N,), pos (N, 3) Å, ... -> "energy" (G,), "forces" (N, 3), ...),
        by the package once it is ready, else by the eager model."""
        args = (z, pos, batch, cell, pbc)
        options = dict(
            compute_forces=compute_forces, compute_stress=compute_stress, neighbors=neighbors,
            inputs_checked=inputs_checked,
        )  # fmt: skip
        self.total_calls += 1
        if self._fast is not None and self._fits(z, neighbors):
            return self._fast(*args, **options)
        start = time.perf_counter()
        out = self.model(*args, **options)
        self.last_call_seconds = time.perf_counter() - start
        self.eager_seconds += self.last_call_seconds
        self.calls += 1
        if self.state != "off":
            self._advance()  # after the call: its time counts; a package found is used from the next call
        return out

    def _fits(self, z: Tensor, neighbors: NeighborList | None) -> bool:
        """Whether the exported graph may take this call (see ``EXPORTED_EDGE_BYTES``)."""
        if neighbors is None:
            return z.numel() <= LARGE_ATOMS
        with torch.enable_grad():  # edge_chunk sizes a forces call
            chunk = self.model.representation_model.edge_chunk(
                neighbors.edge_index.size(1), self.model.dtype, budget=EXPORTED_EDGE_BYTES
            )
        return chunk is None

    # ----------------------------------------------------------------- the policy
    def expected_seconds(self, after_calls: int = 2) -> float:
        """The job's expected eager time: spent so far plus the announced remaining calls at the
        last call's time; 0 before ``after_calls`` calls (the first carries one-off costs, so it
        overestimates: enough to decide a cheap load, not a build)."""
        if self.calls < after_calls:
            return 0.0
        remaining = max((self.planned_calls or 0) - self.calls, 0)
        return self.eager_seconds + self.last_call_seconds * remaining

    def _advance(self) -> None:
        """One step of the state machine (cheap when there is nothing to do)."""
        with self._lock:
            try:
                if self.state == "loading":
                    self._finish_loading()
                elif self.state == "waiting":
                    self._poll_build()
                elif self.state == "eager":
                    self._decide()
            except Exception as err:  # a fault of the fast path never fails the run
                self._give_up(f"{type(err).__name__}: {err}")

    def _decide(self) -> None:
        if self.expected_seconds(after_calls=1) < self.policy.load_seconds:
            return
        if self._key is None:
            self._key = cache_key(self.model)
        package = self.cache.lookup(self._key)
        if package is not None:
            self._start_loading(package)
            return
        if self.calls < 2 or self.expected_seconds() < self.policy.build_seconds:
            return
        failed = self.cache.failure(self._key)
        if failed:
            self._give_up(f"its last build failed ({failed}); it is retried a day later, or clear the cache")
            return
        ok, reason = compile_available(self.model.device)
        if not ok:
            self._give_up(reason)
            return
        if self.cache.building(self._key):  # another process builds it: wait for its package
            self._enter_waiting(None)
            return
        problem = self.cache.writable()
        if problem:
            self._give_up(problem)
            return
        self._enter_waiting(self.launcher(self.cache, self._key, self.model, self.label))
        self.built_here = True

    def _enter_waiting(self, build: Any) -> None:
        self._build, self._build_started = build, time.perf_counter()
        self._next_poll = time.monotonic() + self.policy.poll_seconds
        self.state = "waiting"

    def _poll_build(self) -> None:
        if time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + self.policy.poll_seconds
        package = self.cache.lookup(self._key)
        if package is not None:
            self._start_loading(package)
            return
        code = self._build.poll() if self._build is not None else None
        if self._build is None and not self.cache.building(self._key):
            self.state = "eager"  # the other process's build ended without a package: build here
            self._build = None
        elif code == EXIT_BUSY:
            self._build = None  # another process got the lock first: wait for its package
        elif code is not None and self.cache.lookup(self._key) is None:
            reason = self.cache.failure(self._key) or f"the build process exited with status {code}"
            self._give_up(reason)

    def _start_loading(self, package: Path) -> None:
        future: concurrent.futures.Future = concurrent.futures.Future()
        device, dtype = self.model.device, self.model.dtype

        def load() -> None:
            try:
                future.set_result(self.loader(package, device, dtype))
            except BaseException as err:  # handed to _finish_loading
                future.set_exception(err)

        # a daemon thread: a run that ends while its package is still loading exits at once
        threading.Thread(target=load, name="visnet-load", daemon=True).start()
        self._loading = future
        self._loading_path = package
        self.state = "loading"

    def _finish_loading(self) -> None:
        if not self._loading.done():
            return
        try:
            fast = self._loading.result()
        except Exception as err:  # an intact package that does not load here: not rebuilt for a day
            reason = f"its cached package did not load ({type(err).__name__}: {err})"
            self.cache.discard(self._key)
            self.cache.record_failure(self._key, reason)
            self._give_up(reason)
            return
        if content_hash(self.model) != self._key.content:  # the weights changed since the key
            self._key, self.state = None, "eager"
            return
        self._fast, self.state, self.switched_after = fast, "fast", self.calls
        self.switched_at = time.perf_counter()
        if self.verbose:
            built = (
                f", built in the background in {time.perf_counter() - self._build_started:.0f} s"
                if self._build_started
                else ""
            )
            print(
                f"visnet: {self.label} now runs from its exported package after {self.calls} eager calls{built} "
                f"({self._loading_path})",
                file=sys.stderr,
            )

    def _give_up(self, reason: str) -> None:
        """Stay eager for the rest of this run, saying why once."""
        self.state = "off"
        if not self._warned:
            self._warned = True
            reason = " ".join(str(reason).split())[:400]
            warnings.warn(
                f"visnet: no exported package for {self.label} ({reason}); it runs eagerly",
                FastPathWarning,
                stacklevel=4,
            )

    def describe(self) -> str:
        """Which form ran, in a few words (for run summaries)."""
        if self.state == "fast":
            how = "built in the background during this run" if self.built_here else "from the cache"
            return f"exported package ({how}) from call {self.switched_after + 1}"
        return {
            "waiting": "eager; its exported package is being built in the background for the next run",
            "loading": "eager; its exported package was still loading",
            "off": "eager (no exported package, see the warning)",
        }.get(self.state, "eager (the run was too short for an exported package to pay)")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a running background build or load is over (tests, benchmarks); True when
        the package is in use afterwards (it is taken up by the next call, or here)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state in ("waiting", "loading"):
            if deadline is not None and time.monotonic() > deadline:
                return False
            self._next_poll = 0.0
            self._advance()
            if self.state in ("waiting", "loading"):
                time.sleep(0.05)
        return self._fast is not None
