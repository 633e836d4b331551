"""Named dataset sources the driver can build from a config: the simulator, log folders,
your own files through a mapping, RetroTech, and the judged datasets (LETOR / SVMlight files,
Amazon Shopping Queries (ESCI), Wayfair WANDS)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datamodules.loaders import read_log_dir
from datamodules.tables import SearchLog

log = logging.getLogger(__name__)


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


@dataclass
class EsciSource:
    """Amazon Shopping Queries, one locale and version (see ``datamodules.esci``)."""

    path: str
    locale: str = "us"
    version: str = "small"
    gains: dict | None = None
    name: str = "esci"
    notes: list = field(default_factory=list)

    def __post_init__(self) -> None:
        from datamodules.esci import GAINS, LOCALES, VERSIONS, check_choice
        from datamodules.judged import label_gains

        check_choice("locale", self.locale, LOCALES)
        check_choice("version", self.version, tuple(VERSIONS))
        self.label_gains = label_gains("esci", GAINS, self.gains)  # checks them, too

    def load(self) -> SearchLog:
        from datamodules.esci import read_esci

        self.notes = []
        search_log = read_esci(self.path, self.locale, self.version, self.gains, self.notes)
        _warn(self.name, self.notes)
        return search_log

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "path": str(Path(self.path).resolve()),
            "locale": self.locale,
            "version": self.version,
            "gains": self.label_gains,
        }


@dataclass
class WandsSource:
    """Wayfair WANDS (see ``datamodules.wands``)."""

    path: str
    gains: dict | None = None
    name: str = "wands"
    notes: list = field(default_factory=list)

    def __post_init__(self) -> None:
        from datamodules.judged import label_gains
        from datamodules.wands import GAINS

        self.label_gains = label_gains("wands", GAINS, self.gains)  # checks them, too

    def load(self) -> SearchLog:
        from datamodules.wands import read_wands

        self.notes = []
        search_log = read_wands(self.path, self.gains, self.notes)
        _warn(self.name, self.notes)
        return search_log

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "path": str(Path(self.path).resolve()),
            "gains": self.label_gains,
        }


def _warn(dataset: str, notes: list[str]) -> None:
    """What an adapter dropped from the data, shown as it loads."""
    for note in notes:
        log.warning("%s: %s", dataset, note)


DATASETS = ("simulator", "logdir", "files", "retrotech", "letor", "esci", "wands")

DATASET_OPTIONS = {
    "esci": {"locale": "us", "version": "small", "gains": None},
    "wands": {"gains": None},
}
"""The ``dataset_options`` each dataset takes, with their defaults."""


def dataset_options(dataset: str, options: dict | None) -> dict:
    """``options`` over the dataset's defaults; a key the dataset does not take, or a value it
    cannot use, is an error."""
    options = options or {}
    if not isinstance(options, dict):
        raise ValueError("dataset_options must be a mapping, e.g. {locale: es}")
    allowed = DATASET_OPTIONS.get(dataset, {})
    unknown = sorted(map(str, set(options) - set(allowed)))
    if unknown and not allowed:
        raise ValueError(f"dataset {dataset!r} takes no dataset_options (got {', '.join(unknown)})")
    if unknown:
        raise ValueError(
            f"unknown dataset_options for {dataset}: {', '.join(unknown)}; "
            f"expected {', '.join(allowed)}"
        )
    options = {**allowed, **options}
    # Building the source checks the values, before any data is read.
    if dataset == "esci":
        EsciSource("", **options)
    if dataset == "wands":
        WandsSource("", **options)
    return options


def make_source(
    dataset: str,
    preset: str | None = None,
    path: str | None = None,
    overrides: dict | None = None,
    progress: bool = False,
    options: dict | None = None,
):
    """The source of ``dataset``; ``options`` are its ``dataset_options`` (esci, wands)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    options = dataset_options(dataset, options)
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
    if dataset == "esci":
        if not path:
            raise ValueError(
                "dataset 'esci' needs the folder of its two Parquet files "
                "(--data esci-data/shopping_queries_dataset)"
            )
        return EsciSource(path, **options)
    if dataset == "wands":
        if not path:
            raise ValueError("dataset 'wands' needs its folder (--data WANDS/dataset)")
        return WandsSource(path, **options)
    raise AssertionError(f"dataset {dataset!r} is listed but has no source")
