"""Run under 2 processes by tests/test_distributed.py: DeepSpeed through azero.distributed's hooks, directly.

Three micro-batches make ONE engine step (micro_batch holds sync_gradients False until the last); a NaN loss makes
DeepSpeed skip the step, which deepspeed_skipped reports, and leaves the weights as they were. Prints one JSON line."""

import json
import sys

import torch

from azero.distributed import deepspeed_skipped, local_tensor, make_accelerator, micro_batch, optimizer_steps
from azero.models import load_policy, tiny_tokenizer


def main() -> None:
    acc = make_accelerator("no", 1.0)
    model = load_policy("tiny", tokenizer=tiny_tokenizer(), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, opt = acc.prepare(model, opt)
    ids = torch.arange(3, 19).view(2, 8) + acc.process_index

    def iteration(poison: bool) -> tuple[list[int], bool]:
        steps = []
        for i in range(3):
            with micro_batch(acc, model, last=i == 2):
                loss = model(input_ids=ids, labels=ids).loss / 3
                if poison and i == 1:
                    loss = loss * float("nan")
                acc.backward(loss)
            steps.append(optimizer_steps(acc, model, opt))
        return steps, deepspeed_skipped(opt)

    clean_steps, clean_skipped = iteration(False)
    before = {n: local_tensor(p).detach().clone() for n, p in model.named_parameters()}  # ZeRO-3: the partition
    nan_steps, nan_skipped = iteration(True)
    unchanged = all(torch.equal(before[n], local_tensor(p).detach()) for n, p in model.named_parameters())
    if acc.is_main_process:
        print(json.dumps({"engine": acc.distributed_type.value, "clean_steps": clean_steps, "clean_skipped":
                          clean_skipped, "nan_steps": nan_steps, "nan_skipped": nan_skipped, "unchanged": unchanged,
                          "compared": sum(t.numel() for t in before.values())}))
    sys.stdout.flush()
    acc.wait_for_everyone()
    acc.end_training()  # destroy the process group before exit: a rank tearing down a live group can abort


if __name__ == "__main__":
    main()
