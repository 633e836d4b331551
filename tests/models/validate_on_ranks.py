"""Run by ``torchrun`` from ``test_distributed.py``: every process builds the tiny preset and
the same seeded MMoE network, validates it over its share of the query groups under DDP, and
the first process writes the summed validation NDCG to the file named on the command line."""

import sys
from pathlib import Path

import lightning as L
import torch

from datamodules import SearchLogDataModule
from datamodules.sources import SimulatorSource
from models import create_ranker
from models.devices import TrainerConfig


def main(out: str, processes: int) -> None:
    torch.set_num_threads(1)
    datamodule = SearchLogDataModule(SimulatorSource("tiny"))
    datamodule.setup()
    L.seed_everything(0, verbose=False)
    net = create_ranker("mmoe").build_module(datamodule)
    config = TrainerConfig(accelerator="cpu", devices=processes, strategy="ddp")
    trainer = L.Trainer(
        **config.trainer_kwargs(),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (results,) = trainer.validate(net, datamodule=datamodule, verbose=False)
    if trainer.global_rank == 0:
        Path(out).write_text(repr(results["val_ndcg@10"]))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
