"""Save and resume everything a run needs to continue as if it had never stopped.

Layout of ``OUTPUT_DIR/checkpoint/``:
  model.safetensors   policy weights (main process)
  trainer.pt          optimizer, scheduler, iteration, config, buffers, task RNG (main process)
  rng_rank{r}.pt      torch / numpy / python RNG states of every rank (ranks sample differently)

A checkpoint is first written to ``checkpoint.tmp`` and then swapped in with renames, so a crash while
saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

CKPT = "checkpoint"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(accelerator, output_dir: str | Path, *, model, optimizer, scheduler, trainer_state: dict) -> Path:
    """Write a checkpoint atomically. Must be called by every rank (it synchronises them)."""
    out = Path(output_dir)
    tmp, final, old = out / f"{CKPT}.tmp", out / CKPT, out / f"{CKPT}.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in accelerator.unwrap_model(model).state_dict().items()}
        _drop_tied(state, accelerator.unwrap_model(model))
        save_file(state, tmp / "model.safetensors")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **trainer_state},
                   tmp / "trainer.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_trainer_state(run_dir: str | Path) -> dict:
    """Config, iteration, buffers and optimizer state; read before the model is built (the config decides it)."""
    path = Path(run_dir) / CKPT / "trainer.pt"
    if not path.exists():
        raise FileNotFoundError(f"--resume {run_dir}: no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_weights(run_dir: str | Path, model) -> None:
    from safetensors.torch import load_file

    state = load_file(Path(run_dir) / CKPT / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in _tied_keys(model)]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def load_rng(run_dir: str | Path, rank: int) -> None:
    path = Path(run_dir) / CKPT / f"rng_rank{rank}.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: resume with the same number of processes as the saved run")
    set_rng_state(torch.load(path, weights_only=False))


def fingerprint(model, buffers: dict) -> str:
    """A hash of the exact parameter bytes and buffer contents: equal on every rank of a healthy run."""
    import hashlib
    import json

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(json.dumps({k: b.state_dict() for k, b in sorted(buffers.items())}, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _tied_keys(model) -> set[str]:
    return {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()


def _drop_tied(state: dict, model) -> None:
    # safetensors refuses shared storage; the tied head is rebuilt from the embedding on load.
    for k in _tied_keys(model):
        state.pop(k, None)
