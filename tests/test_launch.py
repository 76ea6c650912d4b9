"""Launch checks (azero/distributed.py): every launch the loop cannot run with one optimizer step per iteration,
the process count it was given and the engine its config names is refused at start with what to change."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType

from azero.distributed import LaunchError, _configure_deepspeed, check_launch, engine_name


def fake(kind=DistributedType.NO, processes=1, gas=1, fsdp_version=2, zero_stage=2, ds_config=None):
    state = SimpleNamespace(fsdp_plugin=SimpleNamespace(fsdp_version=fsdp_version),
                            deepspeed_plugin=SimpleNamespace(zero_stage=zero_stage, deepspeed_config=ds_config or {}))
    return SimpleNamespace(distributed_type=kind, num_processes=processes, gradient_accumulation_steps=gas, state=state)


def test_engine_names():
    assert engine_name(fake()) == "single"
    assert engine_name(fake(DistributedType.MULTI_GPU, 8)) == "ddp"
    assert engine_name(fake(DistributedType.MULTI_CPU, 2)) == "ddp"
    assert engine_name(fake(DistributedType.FSDP, 8)) == "fsdp2"
    assert engine_name(fake(DistributedType.DEEPSPEED, 8, zero_stage=3)) == "zero3"


def test_several_processes_that_each_come_up_alone(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchError, match="each process would train alone"):
        check_launch(fake())
    check_launch(fake(DistributedType.MULTI_CPU, 2))


@pytest.mark.parametrize("named, acc, message", [
    ("fsdp", fake(DistributedType.MULTI_CPU, 2), "names FSDP .* but Accelerate runs ddp"),
    ("deepspeed", fake(DistributedType.MULTI_GPU, 2), "names DeepSpeed .* but Accelerate runs ddp"),
    ("fsdp", fake(DistributedType.FSDP, 2, fsdp_version=1), "FSDP version 1 is not supported"),
    (None, fake(DistributedType.MULTI_GPU, 2, gas=4), "gradient accumulation is set to 4 .* Set it to 1"),
])
def test_engine_or_accumulation_other_than_asked(monkeypatch, named, acc, message):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(LaunchError, match=message):
        check_launch(acc, named)


@pytest.mark.parametrize("config, message", [
    ({"optimizer": {"type": "AdamW"}}, "defines an optimizer"),
    ({"gradient_accumulation_steps": 2}, "gradient_accumulation_steps 2: set it to 1"),
    ({"gradient_clipping": 0.5}, "gradient_clipping 0.5 but --grad-clip is 1.0"),
])
def test_deepspeed_config_that_would_change_the_step(config, message):
    with pytest.raises(LaunchError, match=message):
        _configure_deepspeed(fake(DistributedType.DEEPSPEED, 2, ds_config=config), 1.0)


def test_deepspeed_config_is_made_ours():
    ds = {"gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "zero_optimization": {"stage": 3}}
    _configure_deepspeed(fake(DistributedType.DEEPSPEED, 2, zero_stage=3, ds_config=ds), 0.5)
    assert ds["gradient_accumulation_steps"] == 1 and ds["gradient_clipping"] == 0.5
    assert ds["train_micro_batch_size_per_gpu"] == 1
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_push_to_hub_is_checked_before_the_model_loads(monkeypatch, tmp_path):
    from azero.config import Config, ConfigError, validate

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no stored token either
    with pytest.raises(ConfigError, match="not a repo id"):
        validate(Config(push_to_hub="no-slash"))
    with pytest.raises(ConfigError, match="needs a hub token"):
        validate(Config(push_to_hub="me/azero-qwen"))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    validate(Config(push_to_hub="me/azero-qwen"))
