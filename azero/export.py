"""``OUTPUT_DIR/final/``: the trained policy as a plain Hugging Face folder, written at the end of every run.

config.json + model.safetensors + generation_config.json + the tokenizer files, loadable anywhere with
``AutoModelForCausalLM.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)``. Sharded weights (FSDP2,
ZeRO-3) are gathered to the main process; LoRA adapters are merged into the base weights. The folder is written
as ``final.tmp/`` and renamed, so ``final/`` is always whole. ``--push-to-hub REPO_ID`` uploads it afterwards.
``--snapshot-every N`` writes the same kind of folder every N iterations, ``snapshots/iteration-NNNN/``, and keeps
them all (``checkpoint/`` keeps only the newest), so a run's curve can be scored on another eval set afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import torch

FINAL = "final"
SNAPSHOTS = "snapshots"


def snapshot_name(iteration: int) -> str:
    """The folder of one snapshot, relative to the run folder; zero-padded so that names sort by iteration."""
    return f"{SNAPSHOTS}/iteration-{iteration:04d}"


def export_final(accelerator, model, tokenizer, output_dir: str | Path, name: str = FINAL) -> Path:
    """Gather the policy's full weights and write ``final/`` (or ``name``, a snapshot) on the main process. Every
    rank must call it."""
    from azero.models import is_lora

    state = accelerator.get_state_dict(model)  # collective: full weights on the main process (CPU)
    out = Path(output_dir) / name
    if accelerator.is_main_process:
        policy = accelerator.unwrap_model(model)
        plain = _rebuild(policy, state)
        if is_lora(plain):
            plain = plain.merge_and_unload()  # W + (alpha / r) B A: a plain model of the base architecture
        tmp = out.with_name(f"{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        plain.generation_config = policy.generation_config
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    accelerator.wait_for_everyone()
    return out


def _rebuild(policy, state: dict) -> torch.nn.Module:
    """A plain CPU model of the policy's architecture (with the same LoRA adapters) holding ``state``: the engine's
    own module may be sharded, wrapped or flagged (GGUF), so the export never saves it directly."""
    from transformers import AutoModelForCausalLM

    from azero.models import is_lora

    lora = is_lora(policy)
    base = policy.get_base_model() if lora else policy
    dtype = next(iter(state.values())).dtype
    with _outside_zero3():
        plain = AutoModelForCausalLM.from_config(base.config, dtype=dtype)
    if lora:
        from peft import get_peft_model

        plain = get_peft_model(plain, policy.peft_config["default"])
    missing, unexpected = plain.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")} if base.config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"final/ export: weights do not match the architecture: missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
    if tied:
        plain.tie_weights()
    return plain.eval()


@contextlib.contextmanager
def _outside_zero3():
    """Under ZeRO-3, transformers builds every new model partitioned (a collective inside ``from_config``); the
    export's CPU copy lives on the main process alone, so build it as a plain model."""
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:
        yield
        return
    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def push_to_hub(folder: str | Path, repo_id: str) -> str:
    """Upload ``final/`` to a hub model repo (created if needed; needs a token: ``hf auth login`` or HF_TOKEN)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message="azero: trained policy (final/)")
    return str(getattr(info, "commit_url", info))
