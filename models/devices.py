"""Where neural rankers train: the ``trainer`` settings (Lightning's accelerator, devices,
strategy, precision and nodes), what a record says about the device, and the process group
helpers that keep several processes in step.

Several devices (``--devices 2 --strategy ddp``) run one process per device. Lightning starts
them from the command line by itself, or ``torchrun`` / SLURM start them (README: "Several
devices and nodes"). Every process prepares the same data and walks the same runs; query
groups are dealt whole to the processes, validation NDCG is summed over all of them (so every
process stops at the same epoch and keeps the same weights), predictions are gathered from
every process into row order, and only the first process writes records, tables and W&B.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class TrainerConfig:
    accelerator: str = "auto"  # auto (a GPU where there is one, else the CPU) | cpu | gpu | mps
    devices: int | str = "auto"  # how many (or which, "0,1") devices; auto: 1 on the CPU
    strategy: str = "auto"  # auto (one device) | ddp | fsdp | ... (Lightning's names)
    precision: str | None = None  # None: bf16-mixed on a GPU with bfloat16, else 32-true
    num_nodes: int = 1

    def __post_init__(self):
        if self.num_nodes < 1:
            raise ValueError("trainer.num_nodes must be at least 1")
        if isinstance(self.devices, int) and self.devices < 1:
            raise ValueError("trainer.devices must be at least 1, a list such as '0,1', or auto")

    def trainer_kwargs(self) -> dict[str, Any]:
        """The ``lightning.Trainer`` arguments. Samplers are the data module's own (query
        groups whole, validation without padding), so Lightning's are switched off."""
        return {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "strategy": self.strategy,
            "num_nodes": self.num_nodes,
            "precision": self.precision or default_precision(self.accelerator),
            "use_distributed_sampler": False,
        }


def check_trainer(config: TrainerConfig, cores: int) -> None:
    """One line for settings Lightning would refuse (an unknown strategy or precision, a GPU
    where there is none, more GPUs than exist) or more CPU processes than ``cores``: said
    before any data work, by building the Trainer the run would build."""
    import logging

    import lightning as L

    devices = config.devices
    if config.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"trainer.accelerator: {config.accelerator} asked for, but torch sees no GPU here; "
            "use auto (a GPU where there is one) or cpu"
        )
    if config.accelerator == "cpu" and isinstance(devices, int) and devices > cores:
        raise ValueError(
            f"trainer.devices: {devices} CPU processes on {cores} core(s) would only slow "
            f"training; use at most {cores}"
        )
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its start-up notes are not the point here
    try:
        L.Trainer(
            **config.trainer_kwargs(),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except Exception as error:  # noqa: BLE001 (Lightning's own one-line reasons)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"trainer: {first}") from None
    finally:
        logger.setLevel(level)


def _takes_gpu(accelerator: str) -> bool:
    """Whether ``accelerator`` asks for, or (auto) finds, a CUDA GPU here."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def default_precision(accelerator: str) -> str:
    """bf16 mixed precision on a CUDA GPU that has bfloat16, full precision elsewhere (the
    CPU keeps today's numbers)."""
    bf16 = _takes_gpu(accelerator) and torch.cuda.is_bf16_supported()
    return "bf16-mixed" if bf16 else "32-true"


def single_device(config: TrainerConfig) -> str:
    """The one torch device of a model trained outside Lightning (TabNet): ``cuda`` where the
    accelerator asks for or finds a GPU, else ``cpu``; several devices are Lightning's only."""
    return "cuda" if _takes_gpu(config.accelerator) else "cpu"


def processor_kind() -> str:
    """The architecture and the widest vector instructions torch computes with (e.g.
    ``x86_64 AVX512``): a torch model trained again on another kind gives other last bits,
    while the data and XGBoost's trees are the same on every x86-64 kind."""
    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"


def device_record(trainer) -> dict[str, Any]:
    """What a record and W&B say about where a model trained."""
    root = trainer.strategy.root_device
    name = torch.cuda.get_device_name(root) if root.type == "cuda" else processor_kind()
    return {
        "accelerator": root.type,
        "device_name": name,
        "devices": trainer.num_devices,
        "num_nodes": trainer.num_nodes,
        "world_size": trainer.world_size,
        "precision": str(trainer.precision),
        "strategy": type(trainer.strategy).__name__,
    }


def is_first_process() -> bool:
    """Whether this is the process that writes (rank 0), as its launcher's environment says
    before any process group exists: torchrun's ``RANK``, SLURM's ``SLURM_PROCID``, or
    Lightning's own launcher's ``NODE_RANK`` and ``LOCAL_RANK``; a plain run is first."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name]) == 0
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))
    return node in ("", "0") and os.environ.get("LOCAL_RANK", "0") in ("", "0")


def gather_everywhere(items: list) -> list:
    """Every process's ``items``, concatenated in rank order, on every process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]
