"""Fine-tuning (``visnet fit --init``): exact weights and exact reference refit, units, freezing,
missing elements, ensembles, mixed levels of theory, and the CLI end to end with the tiny config.

The start model is a random ViSNet of the tiny config's architecture, saved in eV; the "new data"
are its own energies and forces plus known per-element offsets (the xTB → DFT situation), so after
the refit and zero optimizer steps it must reproduce them to float32 precision.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import ase.io
import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import REPO, randomize_biases, shared_file

import visnet
from visnet.cli.fit import fine_tune_arguments, lightning_main
from visnet.cli.main import main as cli_main
from visnet.data.datamodule import ViSNetDataModule
from visnet.data.loading import load_atoms_data
from visnet.data.structures import AtomsData
from visnet.training import module as training_module
from visnet.training.finetune import (
    load_start_model,
    member_spec,
    parse_freeze,
    predict_energies,
    refit_energy_references,
)
from visnet.training.module import ViSNetModule
from visnet.units import energy_factor

TINY = str(REPO / "configs" / "tiny.yaml")
# The tiny config's architecture (configs/tiny.yaml), so its model options agree with the start model.
TINY_ARCH = dict(hidden_channels=16, num_layers=2, num_rbf=8, num_heads=2, lmax=1, cutoff=4.0, max_z=10)
OFFSETS = {1: -13.6, 6: -1029.5, 8: -2041.2}  # eV per atom: xTB → DFT-like reference differences
KCAL = energy_factor("eV", "kcal/mol")  # kcal/mol per eV
# float32 energies of ~3e3 eV (after the offsets) carry ~2e-4 eV of rounding; forces ~1e-6 eV/Å.
ENERGY_TOL = 2e-3
FORCE_TOL = 1e-4


def _start_model(path: Path, elements=(1, 6, 8), seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = randomize_biases(visnet.ViSNet(**TINY_ARCH), scale=0.2, seed=seed)
    with torch.no_grad():
        model.prior_model.atomref.weight[[1, 6, 8], 0] = torch.tensor([-0.5, -37.8, -70.1])
        model.std.fill_(0.7)
    return visnet.save_model(
        model,
        path,
        units={"energy": "eV", "length": "Å"},
        elements=list(elements),
        level_of_theory="GFN2-xTB (synthetic)",
    )


def _ethanol_frames(count: int) -> AtomsData:
    raw = np.load(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    pos = raw["R"][:count]
    z = np.tile(raw["z"].astype(np.int64), count)
    ptr = np.arange(count + 1, dtype=np.int64) * pos.shape[1]
    return AtomsData(z=z, pos=pos.reshape(-1, 3), ptr=ptr, y=np.zeros(count))


def _labels(model_file: Path, data: AtomsData) -> tuple[np.ndarray, np.ndarray]:
    """(energies (G,) eV, forces (N, 3) eV/Å): the start model's (float64) plus ``OFFSETS``."""
    model = visnet.load_model(model_file, dtype="float64")
    z, pos = torch.as_tensor(data.z), torch.as_tensor(data.pos)
    batch = torch.repeat_interleave(torch.arange(len(data)), torch.as_tensor(data.natoms))
    out = model(z, pos, batch)
    shift = np.array([OFFSETS.get(int(e), 0.0) for e in data.z])
    per_structure = np.bincount(batch.numpy(), weights=shift, minlength=len(data))
    return out["energy"].detach().numpy() + per_structure, out["forces"].detach().numpy()


def _kcal_npz(path: Path, model_file: Path, count: int = 48) -> Path:
    """An MD17-layout npz (kcal/mol, kcal/mol/Å, theory key) of ethanol labelled by ``_labels``."""
    data = _ethanol_frames(count)
    energy, forces = _labels(model_file, data)
    raw = np.load(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    np.savez(
        path,
        R=raw["R"][:count],
        z=raw["z"],
        E=(energy * KCAL)[:, None],
        F=(forces * KCAL).reshape(count, -1, 3),
        theory="PBE (synthetic)",
    )
    return path


@pytest.fixture(scope="module")
def start_file(tmp_path_factory) -> Path:
    return _start_model(tmp_path_factory.mktemp("start") / "start.pt")


@pytest.fixture(scope="module")
def kcal_data(tmp_path_factory, start_file) -> Path:
    return _kcal_npz(tmp_path_factory.mktemp("data") / "ethanol_kcal.npz", start_file)


def _data_module(path: Path, run_dir: Path, **options) -> ViSNetDataModule:
    settings = dict(num_train=32, num_val=8, num_test=8, batch_size=8, run_dir=str(run_dir))
    return ViSNetDataModule(str(path), **{**settings, **options})


def _trainer(run_dir: Path, **options) -> pl.Trainer:
    settings = dict(
        accelerator="cpu",
        devices=1,
        inference_mode=False,
        default_root_dir=str(run_dir),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**settings, **options})


# ------------------------------------------------------------------ the start model and the refit
def test_init_copies_weights_exactly(start_file):
    model, start = load_start_model(str(start_file))
    saved = visnet.load_model(start_file)
    for (name, a), b in zip(model.state_dict().items(), saved.state_dict().values()):
        assert torch.equal(a, b), name
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert start.energy_unit == "eV" and start.elements == frozenset({1, 6, 8})
    assert start.summary()["level_of_theory"] == "GFN2-xTB (synthetic)"


def test_refit_is_exact_least_squares_with_known_shifts(start_file):
    """Three compositions (ethanol, water, methanol-like fragments) make the per-element offsets
    identifiable: the refit recovers them and the energies with them."""
    ethanol = _ethanol_frames(6)
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    methane = Atoms(
        "CH4",
        positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]],
    )
    molecules = [ethanol]
    for atoms in (water, methane):
        rng = np.random.default_rng(len(atoms))
        frames = [atoms.positions + rng.normal(0, 0.03, atoms.positions.shape) for _ in range(4)]
        molecules.append(
            AtomsData(
                z=np.tile(atoms.numbers, 4).astype(np.int64),
                pos=np.concatenate(frames),
                ptr=np.arange(5, dtype=np.int64) * len(atoms),
                y=np.zeros(4),
            )
        )
    data = AtomsData(
        z=np.concatenate([m.z for m in molecules]),
        pos=np.concatenate([m.pos for m in molecules]),
        ptr=np.concatenate([[0], np.cumsum(np.concatenate([m.natoms for m in molecules]))]).astype(np.int64),
        y=np.zeros(14),
    )
    data.y = _labels(start_file, data)[0]
    model, _ = load_start_model(str(start_file))
    assert np.abs(predict_energies(model, data) - data.y).max() > 1000  # the offsets are there
    shift = refit_energy_references(model, data)
    np.testing.assert_allclose(shift[[1, 6, 8]], [OFFSETS[1], OFFSETS[6], OFFSETS[8]], atol=ENERGY_TOL)
    assert shift[[0, 2, 3, 4, 5, 7, 9]].tolist() == [0.0] * 7  # elements not in the data keep theirs
    np.testing.assert_allclose(predict_energies(model, data), data.y, atol=ENERGY_TOL)
    assert model.training  # put back in its mode


def test_zero_steps_reproduce_kcal_data_in_the_models_ev(start_file, kcal_data, tmp_path):
    """An npz in kcal/mol fine-tunes an eV model: data converted, references refitted in eV, and
    before any optimizer step energies and forces match the (converted) labels."""
    module = ViSNetModule(init=str(start_file), force_weight=0.95, energy_weight=0.05, **TINY_ARCH)
    datamodule = _data_module(kcal_data, tmp_path)
    _trainer(tmp_path).validate(module, datamodule=datamodule, verbose=False)
    data = datamodule.load()
    assert data.units["energy"] == "eV"
    raw = np.load(kcal_data)
    np.testing.assert_allclose(data.y, raw["E"][:, 0] / KCAL, rtol=1e-12)
    model = module.model
    assert model.metadata["units"]["energy"] == "eV"
    assert model.metadata["fine_tuned_from"]["level_of_theory"] == "GFN2-xTB (synthetic)"
    assert model.metadata["level_of_theory"] == "PBE (synthetic)"
    np.testing.assert_allclose(predict_energies(model, data), data.y, atol=ENERGY_TOL)
    forces = model(torch.as_tensor(data.z[:9]), torch.as_tensor(data.pos[:9], dtype=torch.float32))["forces"]
    np.testing.assert_allclose(forces.detach().numpy(), data.forces[:9], atol=FORCE_TOL)


def test_output_unit_contradicting_the_model_is_refused(start_file, kcal_data, tmp_path):
    module = ViSNetModule(init=str(start_file))
    datamodule = _data_module(kcal_data, tmp_path, output_energy_unit="kcal/mol")
    with pytest.raises(ValueError, match="output_energy_unit 'kcal/mol' contradicts the start model's energy unit"):
        _trainer(tmp_path).validate(module, datamodule=datamodule, verbose=False)


def test_element_the_start_model_lacks_is_named(tmp_path, kcal_data):
    start = _start_model(tmp_path / "no_oxygen.pt", elements=(1, 6))
    module = ViSNetModule(init=str(start))
    with pytest.raises(ValueError, match=r"element O \(Z=8\), which the start model .* was not trained on"):
        _trainer(tmp_path).validate(module, datamodule=_data_module(kcal_data, tmp_path), verbose=False)


def test_architecture_arguments_must_agree(start_file):
    ViSNetModule(init=str(start_file), hidden_channels=16)  # agreeing: accepted
    with pytest.raises(ValueError, match=r"model.hidden_channels 32 \(start model: 16\)"):
        ViSNetModule(init=str(start_file), hidden_channels=32)
    with pytest.raises(ValueError, match="model_hparams both given"):
        ViSNetModule(init=str(start_file), model_hparams=visnet.load_model(start_file).hparams)


# ------------------------------------------------------------------------------------- freezing
@pytest.mark.parametrize("freeze, frozen_layers", [("embedding", 0), (1, 1)])
def test_frozen_weights_are_bit_identical_after_training_steps(start_file, kcal_data, tmp_path, freeze, frozen_layers):
    module = ViSNetModule(init=str(start_file), freeze=freeze, lr=5e-3, lr_warmup_steps=0)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(module, datamodule=_data_module(kcal_data, tmp_path))
    assert trainer.global_step == 3
    frozen = {name for name, p in module.model.named_parameters() if not p.requires_grad}
    layers = {f"representation_model.vis_mp_layers.{i}." for i in range(frozen_layers)}
    assert "representation_model.embedding.weight" in frozen
    assert any(n.startswith("representation_model.vis_mp_layers.0.") for n in frozen) == (frozen_layers > 0)
    assert not any(n.startswith("representation_model.vis_mp_layers.1.") for n in frozen)
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    after = dict(module.model.named_parameters())
    for name in frozen:
        assert torch.equal(after[name], before[name]), name
        assert id(after[name]) not in optimized
    assert all(any(n.startswith(prefix) for n in frozen) for prefix in layers)
    changed = [n for n, p in after.items() if n not in frozen and not torch.equal(p, before[n])]
    assert any(n.startswith("output_model.") for n in changed)


def test_freeze_values():
    assert parse_freeze(None, 3) is None
    assert parse_freeze("embedding", 3) == 0
    assert parse_freeze("2", 3) == 2 and parse_freeze(3, 3) == 3
    for bad in ("4", "all", -1, True):
        with pytest.raises(ValueError, match="--freeze"):
            parse_freeze(bad, 3)
    with pytest.raises(ValueError, match="--freeze needs --init"):
        ViSNetModule(freeze="embedding", **TINY_ARCH)


# --------------------------------------------------------------------------- ensembles and CLI
def test_member_spec_maps_ensemble_members(tmp_path, start_file):
    for k in range(2):
        (tmp_path / f"member_{k}").mkdir()
        (tmp_path / f"member_{k}" / "model.pt").write_bytes(start_file.read_bytes())
    assert member_spec(tmp_path, 1) == str(tmp_path / "member_1" / "model.pt")
    assert member_spec(tmp_path, 2) == str(tmp_path / "member_0" / "model.pt")  # k mod M
    assert member_spec("default", 3) == "default"
    with pytest.raises(ValueError, match="names 2 models .* --ensemble 2"):
        load_start_model(str(tmp_path))


def test_fine_tune_arguments():
    argv = ["fit", "--init", "default", "--config", "c.yaml", "--freeze=1"]
    assert fine_tune_arguments(argv) == ["fit", "--config", "c.yaml", "--model.init", "default", "--model.freeze", "1"]
    with pytest.raises(ValueError, match="work with `visnet fit` only"):
        fine_tune_arguments(["test", "--init", "default"])
    with pytest.raises(ValueError, match="--init needs a value"):
        fine_tune_arguments(["fit", "--init"])


def _fit(run_dir: Path, data: Path, *extra: str, config: str = TINY) -> int:
    return lightning_main(
        ["fit", "--config", config, "--data.path", str(data), "--trainer.default_root_dir", str(run_dir)]
        + ["--trainer.max_epochs", "1", *extra]
    )


def _config_without_architecture(path: Path) -> str:
    """configs/tiny.yaml without its ViSNet architecture keys: they come from the start model."""
    lines = Path(TINY).read_text().splitlines()
    path.write_text("\n".join(line for line in lines if line.strip().split(":")[0] not in TINY_ARCH) + "\n")
    return str(path)


def test_cli_fine_tunes_with_freeze_end_to_end(start_file, kcal_data, tmp_path):
    run = tmp_path / "run"
    config = _config_without_architecture(tmp_path / "no_arch.yaml")
    assert _fit(run, kcal_data, "--init", str(start_file), "--freeze", "embedding", config=config) == 0
    tuned, start = visnet.load_model(run / "model.pt"), visnet.load_model(start_file)
    assert tuned.metadata["units"]["energy"] == "eV"
    assert tuned.metadata["fine_tuned_from"]["model"] == str(start_file)
    assert tuned.metadata["elements"] == [1, 6, 8]
    same = {k for k, v in tuned.state_dict().items() if torch.equal(v, start.state_dict()[k])}
    assert "representation_model.embedding.weight" in same
    assert "output_model.output_network.0.update_net.0.weight" not in same
    config = (run / "logs" / "version_0" / "config.yaml").read_text()
    assert f"init: {start_file}" in config and "freeze: embedding" in config


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--init", "/nonexistent/start.pt"], "start.pt"),
        (["--freeze", "7"], "--freeze '7'"),
        (["--freeze", "embedding"], "--freeze needs --init"),
    ],
)
def test_bad_fine_tuning_options_are_one_line_errors(start_file, kcal_data, tmp_path, capsys, extra, message):
    if extra[0] == "--freeze" and extra[1] == "7":
        extra = ["--init", str(start_file), *extra]
    argv = ["fit", "--config", TINY, "--data.path", str(kcal_data), "--trainer.default_root_dir", str(tmp_path)]
    assert cli_main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("visnet: error:") and message in err[0], err
    assert not (tmp_path / "model.pt").exists()


def test_init_with_another_command_is_refused(capsys):
    assert cli_main(["test", "--config", TINY, "--init", "default"]) == 2
    assert "work with `visnet fit` only" in capsys.readouterr().err


def test_cli_refuses_contradicting_architecture(start_file, kcal_data, tmp_path):
    with pytest.raises(ValueError, match=r"model.hidden_channels 32 \(start model: 16\)"):
        _fit(tmp_path / "run", kcal_data, "--init", str(start_file), "--model.hidden_channels", "32")


def test_cli_ensemble_of_fine_tuned_members(start_file, kcal_data, tmp_path):
    run = tmp_path / "ens"
    assert _fit(run, kcal_data, "--init", str(start_file), "--ensemble", "2") == 0
    members = [visnet.load_model(run / f"member_{k}" / "model.pt") for k in range(2)]
    assert all(m.metadata["fine_tuned_from"]["model"] == str(start_file) for m in members)
    weights = [m.state_dict()["output_model.output_network.0.update_net.0.weight"] for m in members]
    assert not torch.equal(weights[0], weights[1])  # seeds 0 and 1: different batch orders


# ------------------------------------------------------------------------- resuming a fine-tune
def _first_train_step(run: Path, version: int) -> int:
    """The global step of the first training row that run ``version`` logged (metrics.csv)."""
    with open(run / "logs" / f"version_{version}" / "metrics.csv") as handle:
        return min(int(row["step"]) for row in csv.DictReader(handle) if row.get("train_loss_step"))


@pytest.fixture(scope="module")
def tuned_run(start_file, kcal_data, tmp_path_factory) -> Path:
    """One epoch of fine-tuning the start model on the kcal/mol data (tiny config)."""
    run = tmp_path_factory.mktemp("tuned")
    assert _fit(run, kcal_data, "--init", str(start_file)) == 0
    return run


def test_fine_tune_resumed_from_a_checkpoint_file_ends_as_an_uninterrupted_run(start_file, kcal_data, tmp_path):
    """``--init M --ckpt_path FILE`` was refused (Lightning put the checkpoint's ``model_hparams``
    beside ``--init``). Resumed from a copy of its first epoch's last.ckpt, the fine-tune starts at
    that checkpoint's step (4: 32 frames in batches of 8), not from the start model, and ends with
    the weights of an uninterrupted two-epoch run. float64, one process: the same operations in the
    same order, so the weights are equal bit for bit."""
    fine_tune = ["--init", str(start_file), "--trainer.precision", "64-true", "--trainer.enable_progress_bar", "false"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _fit(whole, kcal_data, *fine_tune, "--trainer.max_epochs", "2") == 0
    assert _fit(part, kcal_data, *fine_tune) == 0
    kept = shutil.copy(part / "checkpoints" / "last.ckpt", tmp_path / "epoch_1.ckpt")
    assert _fit(part, kcal_data, *fine_tune, "--trainer.max_epochs", "2", "--ckpt_path", str(kept)) == 0
    assert _first_train_step(part, version=1) == 4
    resumed, uninterrupted = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (part, whole))
    assert resumed["global_step"] == uninterrupted["global_step"] == 8
    assert resumed["state_dict"].keys() == uninterrupted["state_dict"].keys()
    for name, value in uninterrupted["state_dict"].items():
        assert value.dtype == torch.float64 or not value.is_floating_point(), name
        assert torch.equal(resumed["state_dict"][name], value), name
    assert visnet.load_model(part / "model.pt").metadata["fine_tuned_from"]["model"] == str(start_file)


def test_resume_must_agree_with_the_checkpoint_on_init(start_file, kcal_data, tuned_run, tmp_path):
    """A fine-tuning checkpoint resumed without ``--init`` would train on data left in kcal/mol; a
    from-scratch one resumed with ``--init`` would replace the start model by its weights: refused."""
    with pytest.raises(ValueError, match=rf"is a fine-tuning run \(--init {start_file}\): resume it with --init"):
        _fit(tuned_run, kcal_data, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    scratch = tmp_path / "scratch"
    assert _fit(scratch, kcal_data) == 0
    with pytest.raises(ValueError, match="was not fine-tuned, so --init"):
        last = str(scratch / "checkpoints" / "last.ckpt")
        _fit(scratch, kcal_data, "--init", str(start_file), "--trainer.max_epochs", "2", "--ckpt_path", last)


def test_testing_a_fine_tuned_checkpoint_file(kcal_data, tuned_run):
    """``visnet test --ckpt_path best.ckpt`` of a fine-tune was refused as well (``init`` and
    ``model_hparams`` both copied from the checkpoint). The recorded start model converts the kcal/mol
    data to its eV: one epoch at lr 5e-3 moves the refitted model (exact to ~2e-3 eV) by ~0.1 eV,
    while labels left in kcal/mol would be ~1e5 eV off."""
    best = str(tuned_run / "checkpoints" / "best.ckpt")
    args = ["--config", TINY, "--data.path", str(kcal_data), "--trainer.default_root_dir", str(tuned_run)]
    assert cli_main(["test", *args, "--trainer.enable_progress_bar", "false", "--ckpt_path", best]) == 0
    newest = max(tuned_run.glob("logs/version_*"), key=lambda folder: int(folder.name.split("_")[1]))
    with open(newest / "metrics.csv") as handle:
        (row,) = [r for r in csv.DictReader(handle) if r.get("test_energy_mae")]
    assert float(row["test_energy_mae"]) < 1.0


def test_a_resumed_fine_tune_neither_refits_nor_says_so(start_file, kcal_data, tmp_path, capsys, monkeypatch):
    """The refit of the start model's references is replaced by the checkpoint's weights on a resume:
    ``visnet fit --init M --ckpt_path last`` skips it and its "refitted" line (which a new fine-tune
    prints). A fine-tune resumed by ``Trainer.fit(ckpt_path=...)`` directly (``restoring`` left False)
    still refits, but prints no line once the checkpoint is loaded."""
    refits: list[int] = []
    original = training_module.refit_energy_references
    monkeypatch.setattr(training_module, "refit_energy_references", lambda *a: refits.append(1) or original(*a))
    run, fine_tune = tmp_path / "run", ["--init", str(start_file), "--trainer.enable_progress_bar", "false"]
    assert _fit(run, kcal_data, *fine_tune) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "refitted" in line]
    assert line.startswith(f"fine-tuning {start_file} on ") and "references refitted to 32 training structures" in line
    assert refits == [1]
    assert _fit(run, kcal_data, *fine_tune, "--trainer.max_epochs", "2", "--ckpt_path", "last") == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8  # resumed at 4
    assert refits == [1] and "refitted" not in capsys.readouterr().out

    direct = tmp_path / "direct"
    trainer = _trainer(direct, max_epochs=3)
    module = ViSNetModule(init=str(start_file), **TINY_ARCH)
    trainer.fit(module, datamodule=_data_module(kcal_data, direct), ckpt_path=run / "checkpoints" / "last.ckpt")
    assert trainer.global_step == 12 and refits == [1, 1]
    assert "refitted" not in capsys.readouterr().out


# ----------------------------------------------------------------------- mixed levels of theory
def _two_level_file(path: Path) -> Path:
    frames = []
    for k, level in enumerate(["GFN2-xTB", "PBE/def2-SVP", "GFN2-xTB"]):
        atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96 + 0.01 * k, 0, 0], [-0.24, 0.93, 0]])
        atoms.info.update(energy=-5.0 - k, level_of_theory=level)
        atoms.arrays["forces"] = np.zeros((3, 3))
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


def test_mixed_levels_of_theory_refused_unless_forced(tmp_path):
    path = _two_level_file(tmp_path / "mixed.extxyz")
    with pytest.raises(ValueError, match=r"mixes levels of theory 'GFN2-xTB' and 'PBE/def2-SVP'.*allow_mixed_theory"):
        load_atoms_data(path, cache_dir=tmp_path / "cache")
    forced = load_atoms_data(path, cache_dir=tmp_path / "cache", allow_mixed_theory=True)
    assert len(forced) == 3
    datamodule = ViSNetDataModule(str(path), cache_dir=str(tmp_path / "cache"), allow_mixed_theory=True)
    assert datamodule.metadata()["level_of_theory"] == "mixed: GFN2-xTB; PBE/def2-SVP"


def test_one_recorded_level_becomes_the_data_level(tmp_path):
    path = tmp_path / "one.extxyz"
    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    atoms.info.update(energy=-5.0, level_of_theory="GFN2-xTB")
    ase.io.write(path, [atoms, atoms], format="extxyz")
    assert load_atoms_data(path, cache_dir=tmp_path / "cache").info["theory"] == "GFN2-xTB"
