"""Named dataset sources the driver can build from a config: the simulator, log folders,
your own files through a mapping, and RetroTech."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from datamodules.loaders import read_log_dir
from datamodules.tables import SearchLog


@dataclass
class SimulatorSource:
    """The embedded simulator at a preset, with optional overrides of its settings."""

    preset: str = "default"
    overrides: dict = field(default_factory=dict)
    progress: bool = False
    name: str = "simulator"

    def config(self):
        from datamodules.simulator import preset

        try:
            return preset(self.preset, **self.overrides)
        except TypeError as error:
            raise ValueError(f"simulator settings: {error}") from None

    def load(self) -> SearchLog:
        from datamodules.simulator import simulate

        return simulate(self.config(), progress=self.progress)

    def describe(self) -> dict:
        return {"dataset": self.name, "preset": self.preset, "simulator": asdict(self.config())}


@dataclass
class LogFolderSource:
    """A folder of canonical tables (see ``datamodules.loaders``)."""

    path: str
    name: str = "logdir"

    def load(self) -> SearchLog:
        return read_log_dir(self.path)

    def describe(self) -> dict:
        return {"dataset": self.name, "path": str(Path(self.path).resolve())}


@dataclass
class RetroTechSource:
    """The RetroTech catalog and click log (``../shared/data/retrotech``)."""

    path: str
    name: str = "retrotech"
    notes: list = field(default_factory=list)

    def load(self) -> SearchLog:
        from datamodules.retrotech import read_retrotech

        log, self.notes = read_retrotech(self.path)
        return log

    def describe(self) -> dict:
        return {"dataset": self.name, "path": str(Path(self.path).resolve())}


@dataclass
class MappedLogSource:
    """Your own files, described by a YAML mapping (see ``datamodules.mapped_log``)."""

    path: str
    name: str = "files"

    def load(self) -> SearchLog:
        from datamodules.mapped_log import read_mapped_log

        return read_mapped_log(self.path)

    def describe(self) -> dict:
        return {"dataset": self.name, "mapping": str(Path(self.path).resolve())}


@dataclass
class LetorSource:
    """A folder of LETOR / SVMlight files (see ``datamodules.letor``)."""

    path: str
    name: str = "letor"

    def load(self) -> SearchLog:
        from datamodules.letor import read_letor

        return read_letor(self.path)

    def describe(self) -> dict:
        return {"dataset": self.name, "path": str(Path(self.path).resolve())}


DATASETS = ("simulator", "logdir", "files", "retrotech", "letor")


def make_source(
    dataset: str,
    preset: str | None = None,
    path: str | None = None,
    overrides: dict | None = None,
    progress: bool = False,
):
    if dataset == "simulator":
        return SimulatorSource(preset or "default", dict(overrides or {}), progress)
    if dataset == "logdir":
        if not path:
            raise ValueError("dataset 'logdir' needs a path (--data PATH)")
        return LogFolderSource(path)
    if dataset == "files":
        if not path:
            raise ValueError("dataset 'files' needs its mapping file (--data my_log.yaml)")
        return MappedLogSource(path)
    if dataset == "letor":
        if not path:
            raise ValueError("dataset 'letor' needs its folder of train/vali/test files (--data)")
        return LetorSource(path)
    if dataset == "retrotech":
        if not path:
            raise ValueError("dataset 'retrotech' needs its folder (--data PATH)")
        return RetroTechSource(path)
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
