"""Run under torchrun with 2 ranks: gather_rows with different row counts per rank (3 and 5).

Each rank writes its result to OUT_DIR/rank{r}.json: two ranks printing to one shared stdout can interleave
their lines."""
import json
import os
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from azero.selfplay import gather_rows

acc = Accelerator(cpu=True)
r = acc.process_index
n = 3 if r == 0 else 5
rewards = torch.arange(n, dtype=torch.float32) + 10 * r  # rank 0: 0 1 2, rank 1: 10 .. 14
groups = torch.full((n, 2), r, dtype=torch.long)  # 2-d rows too
(all_rewards, all_groups), mine = gather_rows(acc, rewards, groups)
out = {"rank": r, "rewards": all_rewards.tolist(), "groups": all_groups[:, 0].tolist(),
       "mine": [mine.start, mine.stop], "check": torch.equal(all_rewards[mine], rewards)}
(Path(os.environ["OUT_DIR"]) / f"rank{r}.json").write_text(json.dumps(out))
acc.wait_for_everyone()
acc.end_training()  # destroy the process group before exit: a rank tearing down a live gloo group can abort
sys.exit(0)
