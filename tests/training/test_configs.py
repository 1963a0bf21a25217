"""Every config in configs/ parses with the CLI, builds its model, and (CPU configs) splits its data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO  # noqa: E402

from visnet.cli.fit import lightning_main
from visnet.data import ViSNetDataModule
from visnet.training.module import ViSNetModule

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
CPU_CONFIGS = ["rmd17_ethanol_cpu.yaml", "rmd17_aspirin_cpu.yaml", "qm9_U0_cpu.yaml", "tiny.yaml"]
PAPER = {"md17.yaml": (256, 9, 4.0e-4), "rmd17.yaml": (256, 9, 2.0e-4), "qm9.yaml": (512, 9, 1.0e-4)}


def test_expected_configs_exist():
    names = {p.name for p in CONFIGS}
    assert set(CPU_CONFIGS) | set(PAPER) <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses(config: Path, capsys):
    assert lightning_main(["fit", "--config", str(config), "--print_config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["trainer"]["inference_mode"] is False
    assert resolved["data"]["path"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_builds_its_model(config: Path):
    cfg = yaml.safe_load(config.read_text())
    model_args = dict(cfg.get("model", {}))
    model_args["target"] = cfg["data"].get("target", "energy")
    module = ViSNetModule(**model_args)
    if config.name in PAPER:
        hidden, layers, lr = PAPER[config.name]
        arch = module.model.hparams
        assert (arch["hidden_channels"], arch["num_layers"], module.hparams.lr) == (hidden, layers, lr)
        assert module.model.lmax == 2 and module.model.cutoff == 5.0
        assert arch["cutoff_type"] == "cosine"  # the paper's envelope


@pytest.mark.parametrize("name", CPU_CONFIGS)
def test_cpu_config_data_exists_and_splits(name: str, tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / name).read_text())
    path = REPO / cfg["data"]["path"]
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    args = {k: v for k, v in cfg["data"].items() if k != "path"}
    dm = ViSNetDataModule(str(path), run_dir=str(tmp_path), **args)
    dm.setup("fit")
    sizes = {k: len(v) for k, v in dm.split_indices.items()}
    assert sizes["train"] > 0 and sizes["val"] > 0
    if name != "tiny.yaml":
        assert sizes["test"] >= 150  # held-out frames for the README table


def test_architecture_is_read_from_the_visnet_signature(capsys):
    """The configs' model section takes every ViSNet argument (types and defaults from its signature)
    except the statistics and the target-derived ones; overrides parse from the command line."""
    import inspect

    from visnet import ViSNet

    config = str(REPO / "configs" / "tiny.yaml")
    assert lightning_main(["fit", "--config", config, "--model.lmax", "2", "--print_config"]) == 0
    model = yaml.safe_load(capsys.readouterr().out)["model"]
    assert model["lmax"] == 2 and model["hidden_channels"] == 16
    expected = set(inspect.signature(ViSNet).parameters) - {"mean", "std", "atomref", "output_key", "derivative"}
    expected -= {"output_head"}  # the module's own argument (default: from the target)
    assert expected <= set(model), expected - set(model)
    assert not {"mean", "std", "atomref"} & set(model)
