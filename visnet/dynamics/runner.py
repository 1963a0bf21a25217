"""``run_md``: one MD simulation with a ViSNet model through ASE, from input checks to plots."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.md.md import MolecularDynamics

from visnet.accel.auto import AutoViSNet
from visnet.dynamics.guard import BlowUpGuard, GuardLimits, MDBlowUpError
from visnet.dynamics.integrators import check_ensemble, init_velocities, make_integrator, prepare_constraints
from visnet.dynamics.nve import MIN_DRIFT_SAMPLES, NVEDrift, nve_drift
from visnet.dynamics.outputs import OutputLock, OutputPaths, Outputs, attach_every, attach_outputs
from visnet.dynamics.plots import plot_energy, plot_temperature
from visnet.dynamics.statistics import TemperatureStats, degrees_of_freedom, temperature_stats
from visnet.dynamics.uncertainty import UncertainFrameStop, UncertaintyMonitor
from visnet.inference.calculator import DEFAULT_SKIN, NonFiniteResultError, ViSNetCalculator
from visnet.inference.fragmented import DEFAULT_NONBONDED_CUTOFF
from visnet.model.interface import model_form
from visnet.proteins.reading import is_protein_file, read_protein
from visnet.structures.molecules import load_structure

__all__ = ["MDConfig", "MDResult", "run_md", "prepare_system", "SMALL_SYSTEM_ATOMS"]

# Below this many atoms a CPU run uses one torch thread by default: per-step work is too small to
# share (measured here: ethanol, 2 contended cores, 14 steps/s with 2 threads vs 200 with 1).
SMALL_SYSTEM_ATOMS = 200


@dataclass
class MDConfig:
    """Settings of one MD run (units: K, fs, 1/ps, bar, Å, eV/Å).

    Attributes:
        structure: file, bundled molecule name or SMILES (see ``load_structure``); a PDB/mmCIF
            file is read as a protein (``visnet.proteins.read_protein``: hydrogens added).
        ensemble: "nve", "langevin", "bussi", "baoab" or "npt".
        temperature: target (thermostats) or initial (NVE) temperature, K.
        timestep: fs.
        steps: MD steps.
        friction: 1/ps (Langevin friction; Bussi/BAOAB time constant = 1/friction).
        pressure: bar (NPT).
        seed: velocities, thermostat noise and SMILES embedding.
        model: model file, bundled name, ViSNet module, or a list of those (committee).
        dtype / device / skin / accel: passed to ``ViSNetCalculator`` (accel "auto": eager, then
            the model's exported package once ready, built in the background for runs long
            enough; "eager", "compile", "export").
        compile: True is accel "compile".
        trust_package: load exported packages not built on this machine (``ViSNetCalculator``).
        output_dir / name: files go to ``output_dir/name.*`` (name: from the structure if None).
        log_interval / traj_interval: steps between log lines / trajectory frames.
        progress / plots: show a progress bar / write PNG plots at the end.
        max_force / min_distance / max_temperature: blow-up guard bounds (eV/Å, Å, K; None:
            ``GuardLimits.default_max_temperature(temperature)``).
        frame: frame of a multi-frame structure file (ASE index).
        threads: torch CPU threads during the run (None: 1 below ``SMALL_SYSTEM_ATOMS`` atoms,
            where thread overhead exceeds the work, else torch's default); restored afterwards.
        keep_velocities: start from the momenta on the atoms (e.g. a ``.traj`` frame, to continue
            a run) instead of drawing Maxwell–Boltzmann velocities at ``temperature``.
        equilibration_steps: steps run first with the same integrator (and the blow-up guard) but
            not recorded: outputs, plots and the temperature statistics cover production only.
        max_force_std: with a committee, frames whose max force std exceeds this (eV/Å) are
            written to ``<name>_uncertain.extxyz`` (``visnet.dynamics.uncertainty``); None: the
            force std is only logged (``<name>_uncertainty.log``) and plotted. Checked every
            ``log_interval`` steps.
        stop_on_uncertain: stop the run at the first such frame (``MDResult.stopped_uncertain``).
        fragmentation / nonbonded / nonbonded_cutoff: passed to ``ViSNetCalculator`` ("ai2bmd": a
            protein in units; the Amber term between units with a cutoff in Å, None: all pairs).
    """

    structure: str = "aspirin"
    ensemble: str = "langevin"
    temperature: float = 300.0
    timestep: float = 0.5
    steps: int = 1000
    friction: float = 10.0
    pressure: float = 1.0
    seed: int = 0
    model: Any = "default"
    dtype: str = "float64"
    device: str | None = None
    skin: float = DEFAULT_SKIN
    compile: bool = False
    accel: str = "auto"
    trust_package: bool = False
    output_dir: Path = Path("md_output")
    name: str | None = None
    log_interval: int = 10
    traj_interval: int = 10
    progress: bool = True
    plots: bool = True
    max_force: float = 50.0
    min_distance: float = 0.5
    max_temperature: float | None = None
    frame: int = -1
    keep_velocities: bool = False
    threads: int | None = None
    equilibration_steps: int = 0
    max_force_std: float | None = None
    stop_on_uncertain: bool = False
    fragmentation: str | None = None
    nonbonded: str | None = "amber14"
    nonbonded_cutoff: float | None = DEFAULT_NONBONDED_CUTOFF

    def limits(self) -> GuardLimits:
        """The blow-up guard bounds of this run."""
        max_t = self.max_temperature
        if max_t is None:
            max_t = GuardLimits.default_max_temperature(self.temperature)
        return GuardLimits(max_force=self.max_force, min_distance=self.min_distance, max_temperature=max_t)


@dataclass
class MDResult:
    """Outcome of ``run_md``.

    Attributes:
        atoms: the system at the end (last step run).
        steps_done: MD steps completed.
        completed: all requested steps ran.
        message: why the run stopped early (blow-up), else None.
        paths: the output files.
        plots: PNGs written.
        wall_time: seconds spent in the MD loop.
        thermo: time (ps), potential/kinetic/total (eV), temperature (K) arrays.
        drift: energy conservation (NVE runs with at least 3 samples), else None.
        temperature: mean / spread / error of the production temperature, else None (no samples).
        dof: degrees of freedom counted by ``atoms.get_temperature()``.
        equilibration_steps: steps run before production (``steps_done`` counts production only).
        force_std: (time ps, max force std eV/Å) of a committee run, else None.
        uncertain_steps: MD steps of the frames written to ``paths.uncertain``.
        stopped_uncertain: the run stopped at an uncertain frame (``stop_on_uncertain``); then
            ``message`` says where, and it is not an error.
        form: which form of the (first) model ran, with the steps/s before and after a switch
            to the exported package (``accel="auto"``).
    """

    atoms: Atoms
    steps_done: int
    completed: bool
    message: str | None
    paths: OutputPaths
    thermo: dict[str, np.ndarray]
    wall_time: float = 0.0
    plots: list[Path] = field(default_factory=list)
    drift: NVEDrift | None = None
    temperature: TemperatureStats | None = None
    dof: int = 0
    equilibration_steps: int = 0
    force_std: tuple[np.ndarray, np.ndarray] | None = None
    uncertain_steps: list[int] = field(default_factory=list)
    stopped_uncertain: bool = False
    form: str = ""


def _check_config(config: MDConfig) -> None:
    if config.steps < 0 or config.equilibration_steps < 0 or config.log_interval < 1 or config.traj_interval < 1:
        raise ValueError(
            f"steps must be >= 0 and intervals >= 1, got steps={config.steps}, "
            f"equilibration_steps={config.equilibration_steps}, log_interval={config.log_interval}, "
            f"traj_interval={config.traj_interval}"
        )
    if config.max_force_std is not None and not config.max_force_std > 0:
        raise ValueError(f"max_force_std must be > 0 eV/Å, got {config.max_force_std}")
    if config.stop_on_uncertain and config.max_force_std is None:
        raise ValueError("stop_on_uncertain needs a max_force_std threshold")
    if not (config.timestep > 0 and config.friction > 0):
        raise ValueError(f"timestep and friction must be positive, got {config.timestep} fs, {config.friction} 1/ps")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be >= 1, got {config.threads}")


def prepare_system(
    config: MDConfig, atoms: Atoms | None = None, calculator: ViSNetCalculator | None = None
) -> tuple[Atoms, ViSNetCalculator]:
    """Load the structure and the model and check everything before any MD step.

    Raises:
        FileNotFoundError / ValueError: unreadable structure or model file, invalid SMILES,
            elements the model was not trained on, NaN positions, pbc without a cell, a bad
            ensemble/temperature/time step.
    """
    _check_config(config)
    atoms = _load(config) if atoms is None else atoms
    check_ensemble(atoms, config.ensemble, config.temperature)
    if calculator is None:
        calculator = ViSNetCalculator(
            model=config.model,  # a run folder or a list: a committee (visnet.inference.resolve)
            device=config.device,
            dtype=config.dtype,
            skin=config.skin,
            compile=config.compile,
            accel=config.accel,
            trust_package=config.trust_package,
            fragmentation=config.fragmentation,
            nonbonded=config.nonbonded,
            nonbonded_cutoff=config.nonbonded_cutoff,
        )
    if calculator.fragmentation is None:
        calculator.check_atoms(atoms)
    else:
        calculator.get_potential_energy(atoms)  # builds the units: a bad protein fails before any step
    if config.max_force_std is not None and "forces_std" not in calculator.implemented_properties:
        raise ValueError("max_force_std needs a committee of at least 2 models (repeat --model, or a run folder)")
    atoms.calc = calculator
    return atoms, calculator


def _load(config: MDConfig) -> Atoms:
    """The starting structure: PDB/mmCIF files as proteins (``read_protein``: hydrogens added)."""
    if is_protein_file(config.structure):
        return read_protein(config.structure)
    return load_structure(config.structure, seed=config.seed, index=config.frame)


def _check_start(atoms: Atoms, config: MDConfig) -> None:
    problem = BlowUpGuard(atoms, config.limits()).problem()
    if problem is not None:
        raise ValueError(f"the initial state is already beyond the blow-up guard's bounds: {problem}")


def _threads(config: MDConfig, atoms: Atoms, calculator: ViSNetCalculator) -> int:
    if config.threads is not None:
        return config.threads
    small = calculator.device.type == "cpu" and len(atoms) < SMALL_SYSTEM_ATOMS
    return 1 if small else torch.get_num_threads()


def _name(config: MDConfig, atoms: Atoms) -> str:
    name = config.name or atoms.info.get("name") or atoms.get_chemical_formula()
    return f"{name}_{config.ensemble}"


def run_md(config: MDConfig, atoms: Atoms | None = None, calculator: ViSNetCalculator | None = None) -> MDResult:
    """Run one simulation described by ``config``.

    Args:
        config: the settings.
        atoms: start from these atoms instead of ``config.structure`` (modified in place).
        calculator: use this calculator instead of building one from ``config.model``.

    Raises:
        FileNotFoundError / ValueError: bad input (see ``prepare_system``) or an initial state
            already beyond the guard bounds, all before any step.
        OutputInUseError: another run is writing the same output files (``OutputLock``), before
            any file is touched.

    Returns:
        MDResult. A blow-up does not raise: the run stops, ``message`` says why, and every
        frame written so far (all of them good) stays readable.

    Example:
        ```python
        from visnet.dynamics import MDConfig, run_md

        config = MDConfig(structure="aspirin", ensemble="langevin", temperature=300.0, steps=1000,
                          output_dir="outputs/md")   # what `visnet md aspirin -T 300` runs
        result = run_md(config)
        print(result.temperature)                    # production mean and its error, K
        ```
    """
    atoms, calculator = prepare_system(config, atoms, calculator)
    calculator.expect_calls(config.steps + config.equilibration_steps)  # lets accel="auto" judge the run
    if not config.keep_velocities:
        init_velocities(atoms, config.temperature, config.seed)
    prepare_constraints(atoms, config.ensemble)
    _check_start(atoms, config)
    dyn = make_integrator(
        atoms, config.ensemble, config.timestep, config.temperature, config.friction, config.seed, config.pressure
    )
    dyn.attach(BlowUpGuard(atoms, config.limits(), dyn), interval=1)  # first: runs before the writers
    paths = OutputPaths(Path(config.output_dir), _name(config, atoms))
    with OutputLock(paths):  # before the first file is opened, until the plots are written
        return _run_locked(config, atoms, calculator, dyn, paths)


def _run_locked(
    config: MDConfig, atoms: Atoms, calculator: ViSNetCalculator, dyn: MolecularDynamics, paths: OutputPaths
) -> MDResult:
    """Equilibration, production with the writers attached, and the result (``run_md``)."""
    message, stopped, start, threads = None, False, time.perf_counter(), torch.get_num_threads()
    model = calculator.model
    calls_at_start = model.total_calls if isinstance(model, AutoViSNet) else 0
    outputs: Outputs | None = None
    try:
        torch.set_num_threads(_threads(config, atoms, calculator))
        if config.equilibration_steps:
            dyn.run(config.equilibration_steps)  # before any output is attached: not recorded
        outputs = _attach(dyn, atoms, paths, config, calculator)
        if config.equilibration_steps:
            dyn.call_observers()  # ASE records the first frame only of a run starting at step 0
        dyn.run(config.steps)
    except UncertainFrameStop as err:
        message, stopped = f"{err}.", True
    except (MDBlowUpError, NonFiniteResultError, ValueError) as err:  # ValueError: the model rejected a step
        if not isinstance(err, MDBlowUpError):
            err = f"MD stopped at step {dyn.nsteps}: {type(err).__name__}: {err}"
        message = f"{err}. Frames up to the last good one are in {paths.traj} and {paths.extxyz}."
    finally:
        torch.set_num_threads(threads)
        if outputs is None:  # stopped during equilibration: empty outputs, for a uniform result
            outputs = _attach(dyn, atoms, paths, config, calculator)
        outputs.close()
    production = max(0, dyn.nsteps - config.equilibration_steps)
    result = _finish(config, atoms, production, message, outputs, time.perf_counter() - start)
    result.equilibration_steps, result.stopped_uncertain = min(dyn.nsteps, config.equilibration_steps), stopped
    result.form = _form(model, start, start + result.wall_time, calls_at_start)
    return result


def _form(model: object, start: float, end: float, calls_at_start: int) -> str:
    """The model's form during the loop [start, end] (perf_counter s); for a switch to the
    exported package (``accel="auto"``), the steps/s before and after it."""
    if not isinstance(model, AutoViSNet):
        return {"compiled": "compiled", "exported": "exported package"}.get(model_form(model) or "", "eager")
    text = model.describe()
    switched = model.switched_at
    if switched is None or not start < switched < end:
        return text
    before, after = model.switched_after - calls_at_start, model.total_calls - model.switched_after
    if before > 0 and after > 0:
        text += f": {before / (switched - start):.1f} steps/s eager, {after / (end - switched):.1f} after"
    return text


def _attach(
    dyn: MolecularDynamics, atoms: Atoms, paths: OutputPaths, config: MDConfig, calculator: ViSNetCalculator
) -> Outputs:
    """The writers, plus the committee's uncertainty monitor (before them) when there is a committee."""
    monitor = None
    if "forces_std" in calculator.implemented_properties:
        paths.directory.mkdir(parents=True, exist_ok=True)
        monitor = UncertaintyMonitor(
            atoms, dyn, paths.uncertainty_log, paths.uncertain, config.max_force_std, config.stop_on_uncertain
        )
        attach_every(dyn, monitor, config.log_interval)
    outputs = attach_outputs(
        dyn,
        atoms,
        paths,
        config.steps,
        config.log_interval,
        config.traj_interval,
        config.progress,
        stress=config.ensemble == "npt",
    )
    if monitor is not None:
        outputs.monitor = monitor
        outputs.closers.append(monitor.close)
    return outputs


def _finish(
    config: MDConfig, atoms: Atoms, steps_done: int, message: str | None, outputs: Outputs, wall: float
) -> MDResult:
    thermo = outputs.record.arrays()
    completed = steps_done >= config.steps and message is None
    result = MDResult(atoms, steps_done, completed, message, outputs.paths, thermo, wall_time=wall)
    result.dof = degrees_of_freedom(atoms)
    if len(thermo["time"]):
        result.temperature = temperature_stats(thermo["time"], thermo["temperature"])
    if config.ensemble == "nve" and len(thermo["time"]) >= MIN_DRIFT_SAMPLES:
        result.drift = nve_drift(thermo["time"], thermo["total"], len(atoms))
    monitor = outputs.monitor
    if monitor is not None:
        result.force_std = (np.asarray(monitor.time), np.asarray(monitor.values))
        result.uncertain_steps = list(monitor.flagged_steps)
    if config.plots and len(thermo["time"]):
        title = f"{outputs.paths.name}: {config.ensemble}, {config.timestep} fs"
        target = None if config.ensemble == "nve" else config.temperature
        energy_plot = outputs.paths.energy_plot
        result.plots = [
            plot_energy(
                thermo["time"],
                thermo["total"],
                thermo["potential"],
                energy_plot,
                title,
                force_std=result.force_std,
                threshold=config.max_force_std,
            ),
            plot_temperature(thermo["time"], thermo["temperature"], outputs.paths.temperature_plot, target, title),
        ]
    return result
