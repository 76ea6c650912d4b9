"""Crash-consistent checkpoints (azero/checkpoint.py): the newest complete folder wins among checkpoint/,
checkpoint.tmp/ and checkpoint.old/; leftovers never block a save; a full disk says so; non-finite or foreign
checkpoints are refused with what to do. In-process, one process, the tiny model: seconds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from azero import checkpoint
from azero.checkpoint import CheckpointError, ResumeError


@pytest.fixture(scope="module")
def run():
    """A prepared tiny policy + AdamW + registered scheduler on a one-process Accelerator (as the trainer builds)."""
    from azero.distributed import make_accelerator
    from azero.models import load_policy, tiny_tokenizer

    acc = make_accelerator("no", 1.0)
    model = load_policy("tiny", tokenizer=tiny_tokenizer(), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model, opt = acc.prepare(model, opt)
    acc.register_for_checkpointing(sched)
    return acc, model, opt


def step(model, opt):
    loss = model(input_ids=torch.arange(3, 13)[None]).logits.float().pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()


def save(run, out: Path, iteration: int) -> Path:
    acc, model, _ = run
    return checkpoint.save(acc, out, model=model, trainer_state={"iteration": iteration, "config": {}})


def test_save_writes_a_complete_marked_folder_and_swaps(run, tmp_path):
    save(run, tmp_path, 1)
    save(run, tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no .tmp / .old left behind
    meta = json.loads((tmp_path / "checkpoint" / "COMPLETE.json").read_text())
    assert meta["iteration"] == 2 and meta["num_processes"] == 1 and meta["engine"] == "single"
    assert "model.safetensors" in meta["files"] and "trainer_state.pt" in meta["files"]
    assert checkpoint.load_trainer_state(tmp_path)["iteration"] == 2


def test_stale_old_folder_does_not_block_a_save(run, tmp_path):
    """Issue 11 item 1: a kill after checkpoint -> checkpoint.old, before the old folder was deleted."""
    save(run, tmp_path, 1)
    shutil.copytree(tmp_path / "checkpoint", tmp_path / "checkpoint.old")
    (tmp_path / "checkpoint.tmp").mkdir()  # and a torn temp folder from another crash
    (tmp_path / "checkpoint.tmp" / "model.safetensors").write_bytes(b"torn")
    save(run, tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert checkpoint.load_trainer_state(tmp_path)["iteration"] == 2


def test_crash_between_the_two_renames_resumes_from_the_new_copy(run, tmp_path):
    """Issue 11 item 2: checkpoint -> checkpoint.old done, checkpoint.tmp -> checkpoint not yet."""
    save(run, tmp_path, 1)
    older = tmp_path / "older"
    shutil.copytree(tmp_path / "checkpoint", older)
    save(run, tmp_path, 2)
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.tmp")
    older.rename(tmp_path / "checkpoint.old")
    assert checkpoint.latest(tmp_path) == tmp_path / "checkpoint.tmp"
    assert checkpoint.load_trainer_state(tmp_path)["iteration"] == 2
    save(run, tmp_path, 3)  # the next save tidies up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert checkpoint.load_trainer_state(tmp_path)["iteration"] == 3


def test_incomplete_or_damaged_folders_are_never_chosen(run, tmp_path):
    save(run, tmp_path, 1)
    shutil.copytree(tmp_path / "checkpoint", tmp_path / "keep")
    save(run, tmp_path, 2)
    (tmp_path / "keep").rename(tmp_path / "checkpoint.old")  # as if the save of 2 had not deleted it yet
    shutil.copytree(tmp_path / "checkpoint", tmp_path / "checkpoint.tmp")
    (tmp_path / "checkpoint.tmp" / "COMPLETE.json").unlink()  # a newer save that never finished
    assert checkpoint.latest(tmp_path) == tmp_path / "checkpoint"
    weights = tmp_path / "checkpoint" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated behind the marker's back
    assert checkpoint.latest(tmp_path) == tmp_path / "checkpoint.old"
    assert checkpoint.load_trainer_state(tmp_path)["iteration"] == 1


def test_no_checkpoint_is_one_clear_line(tmp_path):
    (tmp_path / "checkpoint.tmp").mkdir()
    with pytest.raises(ResumeError, match="no checkpoint there"):
        checkpoint.load_trainer_state(tmp_path)


def test_restore_is_exact_and_refuses_nonfinite_weights(run, tmp_path):
    acc, model, opt = run
    step(model, opt)
    save(run, tmp_path, 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step(model, opt)
    state = checkpoint.restore(acc, tmp_path, model)
    assert state["iteration"] == 5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    shutil.copytree(tmp_path / "checkpoint", tmp_path / "good" / "checkpoint")
    path = tmp_path / "checkpoint" / "model.safetensors"
    raw = bytearray(path.read_bytes())  # a damaged file of the same size (the marker still matches): one fp32 NaN
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    first = min((v for k, v in header.items() if k != "__metadata__"), key=lambda v: v["data_offsets"][0])
    assert first["dtype"] == "F32"
    at = 8 + header_len + first["data_offsets"][0]
    raw[at:at + 4] = bytes.fromhex("0000c07f")
    path.write_bytes(bytes(raw))
    with pytest.raises(ResumeError, match="non-finite weights") as err:
        checkpoint.restore(acc, tmp_path, model)
    assert "--lr" not in str(err.value)
    checkpoint.restore(acc, tmp_path / "good", model)  # the module's model is shared with the other tests


def test_nonfinite_weights_are_never_saved(run, tmp_path):
    acc, model, opt = run
    save(run, tmp_path, 1)
    p = next(model.parameters())
    keep = p.detach().clone()
    with torch.no_grad():
        p[0] = float("inf")
    try:
        with pytest.raises(CheckpointError, match="inf/NaN"):
            save(run, tmp_path, 2)
    finally:
        with torch.no_grad():
            p.copy_(keep)
    assert checkpoint.load_trainer_state(tmp_path)["iteration"] == 1


def test_resume_refuses_another_process_count_or_engine(run, tmp_path):
    acc, model, _ = run
    save(run, tmp_path, 1)
    meta_path = tmp_path / "checkpoint" / "COMPLETE.json"
    meta = json.loads(meta_path.read_text())
    meta.update(num_processes=2, engine="ddp")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ResumeError, match=r"written by 2 process\(es\) under ddp, this launch has 1 under single"):
        checkpoint.check_resumable(tmp_path, acc)


def test_disk_full_message_and_previous_checkpoint_kept(run, monkeypatch, tmp_path):
    """torch reports ENOSPC as a RuntimeError without errno ('basic_ios::clear'); the message names the cause."""
    acc, _, _ = run
    save(run, tmp_path, 1)

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(acc, "save_state", full)
    with pytest.raises(CheckpointError, match=r"is full .* the previous checkpoint .*iteration 1\) is intact"):
        save(run, tmp_path, 2)
    assert not (tmp_path / "checkpoint.tmp").exists()
    assert checkpoint.load_trainer_state(tmp_path)["iteration"] == 1


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_real_full_disk(run, tmp_path):
    """The same on a real filesystem with room for one checkpoint (root + tmpfs; where a machine has neither, the
    monkeypatched test above covers the message): the second save runs out of space."""
    acc, model, opt = run
    step(model, opt)  # optimizer state exists, as in a run
    size = sum(f.stat().st_size for f in save(run, tmp_path / "probe", 1).rglob("*") if f.is_file())
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, f"{int(size * 1.5) // 4096 * 4 + 8}k"):  # room for one checkpoint, not two
        pytest.skip("needs root and tmpfs to fill a real disk")
    try:
        save(run, disk, 1)
        with pytest.raises(CheckpointError, match="is full") as err:
            save(run, disk, 2)
        assert "basic_ios" not in str(err.value).split("(")[0]
        assert not (disk / "checkpoint.tmp").exists()  # the space is given back
        assert checkpoint.load_trainer_state(disk)["iteration"] == 1
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)  # lazy: a file may still be open (mmap)
