"""Named dataset sources the driver can build from a config: the simulator, log folders,
your own files through a mapping, RetroTech, and the judged datasets (LETOR / SVMlight files,
Amazon Shopping Queries (ESCI), Wayfair WANDS)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from datamodules.loaders import read_log_dir, scan_log_dir
from datamodules.settings import as_mapping
from datamodules.simulator.config import DEFAULT_PRESET
from datamodules.tables import LogScan, SearchLog

log = logging.getLogger(__name__)


@dataclass
class SimulatorSource:
    """The embedded simulator at a preset, with optional overrides of its settings."""

    preset: str = DEFAULT_PRESET
    overrides: dict = field(default_factory=dict)
    progress: bool = False
    name: str = "simulator"

    def config(self):
        from datamodules.simulator import preset

        return preset(self.preset, **self.overrides)

    def load(self) -> SearchLog:
        from datamodules.simulator import simulate

        return simulate(self.config(), progress=self.progress)

    def describe(self) -> dict:
        return {"dataset": self.name, "preset": self.preset, "simulator": asdict(self.config())}

    def scan(self) -> LogScan:
        """The log for reading a part at a time (``data.part_rows``): written chunk by chunk
        to a temporary folder (``$TMPDIR``), removed when this source goes, and read back as
        a log folder; the same tables as :meth:`load`."""
        from datamodules.simulator import write_log

        folder = Path(tempfile.mkdtemp(prefix="rankbench-simulated-"))
        weakref.finalize(self, shutil.rmtree, folder, True)
        write_log(self.config(), folder, progress=self.progress)
        return scan_log_dir(folder)


@dataclass
class PathSource:
    """A dataset read from a path (a folder, or a mapping file) by one adapter.

    Subclasses name the dataset, say what ``--data`` must point to (``data_hint``) and
    implement :meth:`read`; rows an adapter drops are reported in ``notes`` and as warnings.
    """

    path: str
    name: str = ""
    notes: list = field(default_factory=list)
    data_hint: ClassVar[str] = "its folder"

    def read(self) -> SearchLog:
        raise NotImplementedError

    def load(self) -> SearchLog:
        self.notes = []
        search_log = self.read()
        for note in self.notes:
            log.warning("%s: %s", self.name, note)
        return search_log

    def options(self) -> dict:
        """Settings besides the path that change what is read (recorded with every run)."""
        return {}

    def describe(self) -> dict:
        return {"dataset": self.name, "path": str(Path(self.path).resolve()), **self.options()}


@dataclass
class LogFolderSource(PathSource):
    """A folder of canonical tables (see ``datamodules.loaders``)."""

    name: str = "logdir"
    data_hint: ClassVar[str] = "a folder of canonical tables"

    def read(self) -> SearchLog:
        return read_log_dir(self.path)

    def scan(self) -> LogScan:
        """The folder's tables for reading a part at a time (``data.part_rows``)."""
        return scan_log_dir(self.path)


@dataclass
class RetroTechSource(PathSource):
    """The RetroTech catalog and click log (``../shared/data/retrotech``)."""

    name: str = "retrotech"

    def read(self) -> SearchLog:
        from datamodules.retrotech import read_retrotech

        search_log, self.notes = read_retrotech(self.path)
        return search_log


@dataclass
class MappedLogSource(PathSource):
    """Your own files, described by a YAML mapping (see ``datamodules.mapped_log``)."""

    name: str = "files"
    data_hint: ClassVar[str] = "its mapping file (e.g. --data my_log.yaml)"

    def read(self) -> SearchLog:
        from datamodules.mapped_log import read_mapped_log

        return read_mapped_log(self.path)


@dataclass
class JudgedSource(PathSource):
    """A judged dataset. Each subclass takes, as its last option, ``simulate_clicks``: None
    for the graded pairs, or the settings that turn them into a click log (see
    ``datamodules.semi_synthetic``), typed and checked here, before any data is read."""

    click_gain: ClassVar[str] = "exponential"  # how its judgments map to attraction

    def __post_init__(self) -> None:
        from datamodules.semi_synthetic import simulation_settings

        self.click_simulation = simulation_settings(
            self.simulate_clicks, self.name, *self.logging_features(), self.click_gain
        )

    def logging_features(self) -> tuple[str, str]:
        """A regular expression of the numeric columns a ``logging: feature`` ranker may
        read, and the same in words."""
        return "", "none"

    def options(self) -> dict:
        if self.click_simulation is None:  # so records of the graded pairs stay as they were
            return {}
        return {"simulate_clicks": as_mapping(self.click_simulation)}


@dataclass
class LetorSource(JudgedSource):
    """A folder of LETOR / SVMlight files (see ``datamodules.letor``)."""

    name: str = "letor"
    simulate_clicks: dict | bool | None = None
    data_hint: ClassVar[str] = "its folder of train/vali/test files"

    def read(self) -> SearchLog:
        from datamodules.letor import read_letor

        return read_letor(self.path)

    def logging_features(self) -> tuple[str, str]:
        return r"f\d+", "f<id> of its files (e.g. f110, BM25 of the whole document in MSLR)"


@dataclass
class EsciSource(JudgedSource):
    """Amazon Shopping Queries, one locale and version (see ``datamodules.esci``)."""

    locale: str = "us"
    version: str = "small"
    gains: dict | None = None
    simulate_clicks: dict | bool | None = None
    name: str = "esci"
    data_hint: ClassVar[str] = (
        "the folder of its two Parquet files (e.g. --data esci-data/shopping_queries_dataset)"
    )
    click_gain: ClassVar[str] = "linear"  # its judgments are NDCG gains already

    def __post_init__(self) -> None:
        from datamodules.esci import GAINS, LOCALES, VERSIONS, check_choice
        from datamodules.judged import label_gains

        check_choice("locale", self.locale, LOCALES)
        check_choice("version", self.version, tuple(VERSIONS))
        self.label_gains = label_gains("esci", GAINS, self.gains)  # checks them, too
        super().__post_init__()

    def read(self) -> SearchLog:
        from datamodules.esci import read_esci

        return read_esci(self.path, self.locale, self.version, self.gains, self.notes)

    def options(self) -> dict:
        given = {"locale": self.locale, "version": self.version, "gains": self.label_gains}
        return {**given, **super().options()}


@dataclass
class WandsSource(JudgedSource):
    """Wayfair WANDS (see ``datamodules.wands``)."""

    gains: dict | None = None
    simulate_clicks: dict | bool | None = None
    name: str = "wands"
    data_hint: ClassVar[str] = "its folder (e.g. --data WANDS/dataset)"

    def __post_init__(self) -> None:
        from datamodules.judged import label_gains
        from datamodules.wands import GAINS

        self.label_gains = label_gains("wands", GAINS, self.gains)  # checks them, too
        super().__post_init__()

    def read(self) -> SearchLog:
        from datamodules.wands import read_wands

        return read_wands(self.path, self.gains, self.notes)

    def logging_features(self) -> tuple[str, str]:
        from datamodules.wands import NUMERIC_COLUMNS

        return "|".join(NUMERIC_COLUMNS), ", ".join(NUMERIC_COLUMNS)

    def options(self) -> dict:
        return {"gains": self.label_gains, **super().options()}


PATH_SOURCES: dict[str, type[PathSource]] = {
    "logdir": LogFolderSource,
    "files": MappedLogSource,
    "retrotech": RetroTechSource,
    "letor": LetorSource,
    "esci": EsciSource,
    "wands": WandsSource,
}


DATASETS = ("simulator", *PATH_SOURCES)


def _option_defaults(source_class: type[PathSource]) -> dict:
    """A source's settings besides its path: the dataclass fields it adds to PathSource's."""
    base = {f.name for f in fields(PathSource)}
    return {f.name: f.default for f in fields(source_class) if f.name not in base}


DATASET_OPTIONS = {
    dataset: defaults
    for dataset, source_class in PATH_SOURCES.items()
    if (defaults := _option_defaults(source_class))
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
    if allowed:  # building the source checks the values, before any data is read
        PATH_SOURCES[dataset]("", **options)
    return options


def make_source(
    dataset: str,
    preset: str | None = None,
    path: str | None = None,
    overrides: dict | None = None,
    progress: bool = False,
    options: dict | None = None,
):
    """The source of ``dataset``; ``options`` are its ``dataset_options`` (letor, esci,
    wands)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    options = dataset_options(dataset, options)
    if dataset == "simulator":
        return SimulatorSource(preset or DEFAULT_PRESET, dict(overrides or {}), progress)
    source_class = PATH_SOURCES[dataset]
    if not path:
        raise ValueError(f"dataset {dataset!r} needs {source_class.data_hint} (--data PATH)")
    return source_class(path, **options)
