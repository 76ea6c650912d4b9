"""The distributed engine under the loop: which one Accelerate runs, and the few places where the loop must know.
(Not the rollout engine of rl/sampling.py, which only samples.)

Engines, chosen by the launch (``accelerate launch --config_file configs/accelerate/NAME.yaml``, see README):
  single : one process             ddp    : DistributedDataParallel (``ddp.yaml``, or ``torchrun``)
  fsdp2  : torch FSDP2 ``fully_shard`` (``fsdp2.yaml``): parameters, gradients and optimizer state sharded
  zero1/2/3 : DeepSpeed ZeRO (``zero2.yaml``, ``zero3.yaml``): optimizer state / + gradients / + parameters sharded

Whatever the engine, an iteration is ONE optimizer step over all its micro-batches (``micro_batch``), generation
runs on gathered full weights (``generation_model``), the KL reference is sharded like the policy
(``prepare_reference``), and checkpoints go through Accelerate's state API (``azero/checkpoint.py``).

On a machine without CUDA, Accelerate silently turns an FSDP or DeepSpeed launch into plain multi-CPU DDP.
Both engines do run on CPU over gloo, so for a multi-process CPU launch that names one (``accelerate launch
--config_file configs/accelerate/fsdp2.yaml --num_processes 2`` on a laptop, or the tests) we set the same
state Accelerate sets on GPUs: the real engine then shards, steps and checkpoints on CPU.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import nullcontext
from pathlib import Path

import torch

from azero.config import ConfigError


class LaunchError(ConfigError):
    """A launch the loop cannot run as asked: one line (train.py prints it, exit 2) that says what to change."""


def named_engine() -> str | None:
    """The engine the launch asks for (``accelerate launch`` exports these from the config file)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "deepspeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    return None


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (x86 AMX-BF16 or AVX512-BF16, Arm BF16). Without it oneDNN
    emulates bf16 through fp32, and autocast makes a cpu-preset iteration slower, not faster: 305 s against 85 s
    in fp32 on a Xeon with AVX512 but no AVX512-BF16 (bench/precision.py; docs/RESULTS.md section 27)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if any(probe is not None and probe() for probe in probes):
        return True
    try:  # Arm (and x86 where the private probes above are gone): the kernel's feature flags
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"amx_bf16", "avx512_bf16", "bf16"})


def resolve_precision(requested: str, *, cuda: bool | None = None, cuda_bf16: bool | None = None,
                      cpu_bf16: bool | None = None) -> tuple[str, str]:
    """The autocast mode a run uses for ``--mixed-precision requested``, and one line saying why (printed at start).
    "auto" is bf16 where the hardware computes it (a CUDA device with bf16, a CPU with native bf16) and fp32
    ("no") elsewhere; an explicit mode is kept, with a warning where it is emulated. The keyword arguments stand in
    for the machine (tests); by default they are probed."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda:
        native = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        where = "this CUDA device"
    else:
        native = cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16
        where = "this CPU"
    if requested == "auto":
        chosen = "bf16" if native else "no"
        return chosen, (f"precision: --mixed-precision auto -> {chosen} ({where} "
                        f"{'computes bf16 natively' if native else 'has no native bf16: fp32 is faster here'})")
    if requested == "bf16" and not native:
        return requested, (f"precision: bf16 autocast, but {where} has no native bf16 (no AMX / AVX512-BF16 on "
                           "x86): it is emulated and several times slower than fp32; --mixed-precision auto (or no) "
                           "trains in fp32")
    return requested, f"precision: --mixed-precision {requested}"


def make_accelerator(mixed_precision: str = "no", grad_clip: float = 1.0):
    """The Accelerator for this launch, refused at start (LaunchError) if its semantics are not the loop's:
    one optimizer step per iteration, the process count and the engine the launch asked for."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    if mixed_precision == "auto":  # callers without train.py (tests, LoRA); train.py passes the resolved mode
        mixed_precision, _ = resolve_precision(mixed_precision)
    named, cuda = named_engine(), torch.cuda.is_available()
    on_cpu_engine = named is not None and not cuda and launched_world_size() > 1
    saved = os.environ.pop("ACCELERATE_USE_DEEPSPEED", None) if on_cpu_engine and named == "deepspeed" else None
    try:
        acc = Accelerator(mixed_precision=mixed_precision, cpu=not cuda,
                          kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
    finally:
        if saved is not None:
            os.environ["ACCELERATE_USE_DEEPSPEED"] = saved
    if on_cpu_engine and acc.num_processes > 1:
        _engine_on_cpu(acc, named, mixed_precision)
    check_launch(acc, named)
    if acc.distributed_type.value == "DEEPSPEED":
        _configure_deepspeed(acc, grad_clip)
    return acc


def _engine_on_cpu(acc, named: str, mixed_precision: str) -> None:
    """Run FSDP2 / DeepSpeed on a gloo CPU process group: what ``AcceleratorState`` does on GPUs, where it picks the
    engine from the same environment variables (accelerate/state.py), done here because on CPU it does not."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    if named == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin()  # reads FSDP_* from the environment, as on GPUs
        if mixed_precision != "no":
            plugin.set_mixed_precision(mixed_precision)
        acc.state.fsdp_plugin = plugin
        kind = DistributedType.FSDP
    else:
        from accelerate.utils import DeepSpeedPlugin

        import deepspeed.ops

        # gloo does the collectives; DeepSpeed's optional shared-memory all-reduce for CPUs would be compiled with
        # g++ at the first run (minutes on 2 cores) for nothing here
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        plugin = DeepSpeedPlugin()  # reads ACCELERATE_DEEPSPEED_* from the environment, as on GPUs
        plugin.set_mixed_precision(mixed_precision)
        plugin.select(_from_accelerator_state=True)
        acc.state.deepspeed_plugins = plugin
        acc.deepspeed_engine_wrapped = None
        kind = DistributedType.DEEPSPEED
    acc.state.distributed_type = kind
    PartialState._shared_state["distributed_type"] = kind  # AcceleratorState re-reads it from here


def engine_name(acc) -> str:
    t = acc.distributed_type.value
    if t == "FSDP":
        return f"fsdp{acc.state.fsdp_plugin.fsdp_version}"
    if t == "DEEPSPEED":
        return f"zero{acc.state.deepspeed_plugin.zero_stage}"
    return "single" if t == "NO" else "ddp"


def check_launch(acc, named: str | None = None) -> None:
    """Refuse launches whose semantics the loop cannot guarantee, each with what to change."""
    world, engine = launched_world_size(), engine_name(acc)
    if world > 1 and acc.num_processes == 1:
        raise LaunchError(
            f"the launcher started {world} processes (WORLD_SIZE={world}) but Accelerate set up a single-process run "
            f"({acc.distributed_type.value}): each process would train alone. On a machine without GPUs launch with "
            "`torchrun --nproc_per_node N train.py` or `accelerate launch --config_file configs/accelerate/ddp.yaml "
            "--num_processes N train.py` (or fsdp2.yaml); on GPUs check that every process sees a CUDA device.")
    if named == "fsdp" and not engine.startswith("fsdp"):
        raise LaunchError(f"the launch config names FSDP (ACCELERATE_USE_FSDP=true) but Accelerate runs {engine}; "
                          "launch with `accelerate launch --config_file configs/accelerate/fsdp2.yaml` on CUDA GPUs "
                          "or >= 2 CPU processes")
    if named == "deepspeed" and not engine.startswith("zero"):
        raise LaunchError(f"the launch config names DeepSpeed (ACCELERATE_USE_DEEPSPEED=true) but Accelerate runs "
                          f"{engine}; install deepspeed and launch with >= 2 processes on CPU or on CUDA GPUs")
    if engine == "fsdp1":
        raise LaunchError("FSDP version 1 is not supported (generation gathers FSDP2 modules): set fsdp_version: 2 "
                          "in the config, as configs/accelerate/fsdp2.yaml does")
    if acc.distributed_type.value not in ("NO", "MULTI_GPU", "MULTI_CPU", "MULTI_XPU", "MULTI_NPU", "FSDP",
                                          "DEEPSPEED"):
        raise LaunchError(f"engine {acc.distributed_type.value} is not supported: use one of configs/accelerate/")
    if acc.gradient_accumulation_steps != 1:
        raise LaunchError(
            f"gradient accumulation is set to {acc.gradient_accumulation_steps} (ACCELERATE_GRADIENT_ACCUMULATION_STEPS "
            "or gradient_accumulation_steps in the accelerate/DeepSpeed config): azero already accumulates every "
            "micro-batch of an iteration into one optimizer step (--micro-batch-size sets their size), and a second "
            "accumulation would divide the loss again and step less than once per iteration. Set it to 1.")


def _configure_deepspeed(acc, grad_clip: float) -> None:
    """DeepSpeed steps inside ``backward`` with its own clipping: make its config say what our Config says, or refuse."""
    plugin = acc.state.deepspeed_plugin
    ds = plugin.deepspeed_config
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise LaunchError(f"the DeepSpeed config defines an {key}: remove it; azero builds AdamW and its schedule "
                              "from --lr, --weight-decay, --warmup-iterations and --lr-decay")
    gas = ds.get("gradient_accumulation_steps", "auto")
    if gas not in ("auto", 1):
        raise LaunchError(f"the DeepSpeed config sets gradient_accumulation_steps {gas}: set it to 1 (azero accumulates "
                          "the micro-batches of an iteration itself and steps once per iteration)")
    ds["gradient_accumulation_steps"] = 1
    clip = ds.get("gradient_clipping", "auto")
    if clip != "auto" and float(clip) != float(grad_clip):
        raise LaunchError(f"the DeepSpeed config sets gradient_clipping {clip} but --grad-clip is {grad_clip}: "
                          "make them equal (or set the config's to auto)")
    ds["gradient_clipping"] = float(grad_clip)
    # We hand Accelerate no dataloader, so it cannot infer this; DeepSpeed only uses it for its batch bookkeeping.
    if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        ds["train_micro_batch_size_per_gpu"] = 1
    if plugin.zero_stage == 3:
        # get_state_dict (final/ export) needs the gathered 16-bit weights
        ds.setdefault("zero_optimization", {})["stage3_gather_16bit_weights_on_model_save"] = True


# ----------------------------------------------------------------------------------------------------
# the loop's hooks


@contextlib.contextmanager
def micro_batch(acc, model, last: bool):
    """Accumulate one micro-batch of an iteration's single optimizer step, the same under every engine.

    DDP: no gradient all-reduce until the last micro-batch. DeepSpeed: Accelerate's ``backward`` runs the engine's
    step (clip, AdamW, zero_grad) whenever ``sync_gradients`` is True, so it is False until the last micro-batch.
    FSDP2 reduce-scatters every micro-batch: the sum is the same, and holding unsharded gradients to the end would
    cost a full gradient copy per rank."""
    ddp = acc.distributed_type.value.startswith("MULTI_")
    acc.gradient_state._set_sync_gradients(last)
    try:
        with acc.no_sync(model) if ddp and not last else nullcontext():
            yield
    finally:
        acc.gradient_state._set_sync_gradients(True)


def steps_in_backward(acc) -> bool:
    """DeepSpeed has already stepped (or skipped a non-finite step) inside the last micro-batch's backward."""
    return acc.distributed_type.value == "DEEPSPEED"


def deepspeed_skipped(optimizer) -> bool:
    """DeepSpeed's own verdict on the step it just took: it skips a step whose gradient norm is inf or NaN."""
    return bool(getattr(optimizer, "step_was_skipped", False))


@contextlib.contextmanager
def generation_model(acc, model, gather: bool = True):
    """The policy with its full weights on every rank, for ``generate`` (sampling, learnability, eval).

    Sharded engines gather the weights once per phase instead of once per decoding step: each rank then decodes
    alone, with no collective inside ``generate``, so ranks may run different numbers of steps (no synced_gpus)
    (bench/README.md: gather vs per-step sharded forward). Unsharded engines yield the bare module."""
    engine = engine_name(acc) if gather else "sharded"
    if engine == "sharded":  # --synced-gpus: every forward gathers what it needs; ranks step generate together
        yield acc.unwrap_model(model)
    elif engine == "fsdp2":
        with _fsdp2_gathered(model):
            yield model
    elif engine == "zero3":
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            _zero3_hooks(model, remove=True)
            try:
                yield acc.unwrap_model(model)
            finally:
                _zero3_hooks(model, remove=False)
    else:
        yield acc.unwrap_model(model)


@contextlib.contextmanager
def _fsdp2_gathered(model):
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for m in units:
        m.set_reshard_after_forward(False, recurse=False)  # stay gathered across the decoding steps
    for m in units:
        m.unshard()  # one all-gather per unit, before the first step
    try:
        yield
    finally:
        for m in units:
            m.reshard()
            m.set_reshard_after_forward(True, recurse=False)


def _zero3_hooks(engine, remove: bool) -> None:
    """While the weights are gathered, ZeRO-3's per-module fetch/release hooks would re-partition them after every
    forward; lift them for the generation phase and put them back after (as TRL's unwrap_model_for_generation)."""
    opt = getattr(engine, "optimizer", None)
    if opt is None:
        return
    offload = getattr(opt, "parameter_offload", opt)
    if remove:
        for p in offload.module.parameters(recurse=True):
            p.ds_active_sub_modules.clear()
        for h in offload.forward_hooks + offload.backward_hooks:
            h.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
    else:
        offload._register_deepspeed_module(offload.module)


def prepare_reference(acc, ref):
    """The frozen KL reference, held like the policy: FSDP2-sharded under FSDP2, ZeRO-3-partitioned under ZeRO-3
    (and cast to DeepSpeed's dtype under ZeRO-1/2, so the KL is exactly 0 at step 0); on the device otherwise."""
    engine = engine_name(acc)
    if engine == "fsdp2":
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        ref = fsdp2_prepare_model(acc, ref)  # accelerate's own fully_shard wrapping, without an optimizer
    elif engine.startswith("zero"):
        import copy

        import deepspeed

        config = copy.deepcopy(acc.state.deepspeed_plugin.deepspeed_config)
        config.pop("optimizer", None)
        config.pop("scheduler", None)
        if engine != "zero3":
            config["zero_optimization"] = {"stage": 0}
        ref_engine, *_ = deepspeed.initialize(model=ref, config=config)
        ref = ref_engine.module
        object.__setattr__(ref, "_azero_engine", ref_engine)  # keep the engine alive, not as a submodule (a cycle)
    else:
        ref = ref.to(acc.device)
    return ref.eval()


def optimizer_steps(acc, model, optimizer) -> int:
    """Optimizer steps actually applied so far, read from the engine itself (not counted by the loop)."""
    if acc.distributed_type.value == "DEEPSPEED":
        return int(model.global_steps) - int(getattr(model, "skipped_steps", 0))
    inner = getattr(optimizer, "optimizer", optimizer)
    steps = [s["step"] for s in inner.state.values() if "step" in s]
    return int(max(float(s) for s in steps)) if steps else 0


def local_tensor(p: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter: the local shard of an FSDP2 DTensor, the partition of a ZeRO-3 parameter."""
    if hasattr(p, "to_local"):
        return p.to_local()
    if hasattr(p, "ds_tensor"):
        return p.ds_tensor
    return p


def nonfinite_parameters(acc, model) -> list[str]:
    """Names of parameters holding inf/NaN on any rank (every rank must call: the count is reduced)."""
    from accelerate.utils import reduce

    bad = [n for n, p in model.named_parameters() if not torch.isfinite(local_tensor(p).detach()).all()]
    total = reduce(torch.tensor(float(len(bad)), device=acc.device), "sum").item() if acc.num_processes > 1 else len(bad)
    return bad if bad or not total else ["(on another rank)"]
