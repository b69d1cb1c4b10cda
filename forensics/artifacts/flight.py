"""NCCL Flight Recorder dumps (one pickle per rank): the first collective where the ranks
disagree, or where some ranks never arrived, as `torchfrtrace` would report it. Each dump
is read once into typed `Dump`s; a field of the wrong type is a malformed-dump error."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from forensics.artifacts.plain import PlainReader, Where
from forensics.artifacts.restricted import load_plain
from forensics.errors import ForensicsError, InputError
from forensics.inputs.layouts import flight_dump_rank
from forensics.model import CollectiveMismatch, FlightRecord

#: entries, tensor sizes and ranks one dump's reading visits, a shared one each time it is
#: met (a dump holds a ring buffer of 2,000 entries by default)
FLIGHT_MAX_ELEMENTS = 4_000_000

Sizes = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Collective:
    """One collective call a rank recorded."""

    process_group: str
    seq: int
    op: str
    input_sizes: Sizes | None
    output_sizes: Sizes | None
    state: str | None


@dataclass(frozen=True)
class Dump:
    """One rank's dump: its collectives (point-to-point calls left out) and the members of
    each process group it knew."""

    rank: int
    collectives: tuple[Collective, ...]
    groups: dict[str, tuple[int, ...]]


def rank_of(path: Path) -> int | None:
    """The rank of a dump file given by name (any TORCH_NCCL_DEBUG_INFO_TEMP_FILE prefix)."""
    return flight_dump_rank(path.name, any_prefix=True)


def dump_files(paths: tuple[str, ...] | list[str]) -> list[Path]:
    """The dump files named, a folder standing for the dumps in it."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            files.append(path)
            continue
        try:
            files += sorted(p for p in path.iterdir() if p.is_file() and rank_of(p) is not None)
        except OSError as err:
            raise InputError(f"{path}: {err.strerror or err}") from err
    return files


def read_dump(path: Path) -> Dump:
    """One dump file, typed, or InputError naming the file and what is wrong with it."""
    rank = rank_of(path)
    if rank is None:
        raise InputError(f"{path}: not a Flight Recorder dump (no rank at the end of its name)")
    data = load_plain(path)
    if not isinstance(data, dict) or "entries" not in data:
        raise InputError(f"{path}: not a Flight Recorder dump (no 'entries')")
    read = PlainReader(str(path), "Flight Recorder dump", FLIGHT_MAX_ELEMENTS)
    collectives = []
    for i, raw in enumerate(read.items(data, "entries", ())):
        collective = _collective(read, read.mapping(raw, ("entries", i)), ("entries", i))
        if collective is not None:
            collectives.append(collective)
    return Dump(rank, tuple(collectives), _groups(read, data))


def read_dumps(paths: list[Path]) -> tuple[dict[int, Dump], list[str]]:
    """rank -> dump for every readable file, and one problem line per unreadable one."""
    dumps, problems = {}, []
    for path in paths:
        try:
            dump = read_dump(path)
        except ForensicsError as err:
            problems.append(str(err))
            continue
        dumps[dump.rank] = dump
    return dumps, problems


def load_dumps(paths: list[Path]) -> dict[int, Dump]:
    """rank -> dump, the rank read from the file name's trailing digits; InputError on the
    first unreadable file."""
    return {dump.rank: dump for dump in map(read_dump, paths)}


def _collective(read: PlainReader, entry: Mapping, where: Where) -> Collective | None:
    """An entry as a Collective; None for a point-to-point call."""
    p2p = entry.get("is_p2p")
    if not isinstance(p2p, bool | None):
        raise read.malformed((*where, "is_p2p"), p2p, "a bool")
    if p2p:
        return None
    if "pg_id" in entry:
        pg = entry["pg_id"]
        group = read.as_text(pg, (*where, "pg_id")) if isinstance(pg, str) \
            else str(read.as_int(pg, (*where, "pg_id")))
    else:
        group = _group_name(read, entry.get("process_group", ("0",)), (*where, "process_group"))
    return Collective(
        group, read.as_int(entry.get("collective_seq_id", -1), (*where, "collective_seq_id")),
        read.text(entry, "profiling_name", where, "?") or "?",
        _sizes(read, entry.get("input_sizes"), (*where, "input_sizes")),
        _sizes(read, entry.get("output_sizes"), (*where, "output_sizes")),
        read.text(entry, "state", where))


def _group_name(read: PlainReader, value: object, where: Where) -> str:
    """A `process_group` field, (name, description), as its name."""
    if not isinstance(value, list | tuple) or not value:
        raise read.malformed(where, value, "a (name, description) pair")
    name = value[0]
    return name if isinstance(name, str) else str(read.as_int(name, (*where, 0)))


def _sizes(read: PlainReader, value: object, where: Where) -> Sizes | None:
    """Tensor sizes, a list of shapes."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise read.malformed(where, value, "a list of shapes")
    read.spend(len(value))
    shapes = []
    for i, shape in enumerate(value):
        if not isinstance(shape, list | tuple):
            raise read.malformed((*where, i), shape, "a shape (a list of integers)")
        read.spend(len(shape))
        shapes.append(tuple(read.as_int(n, (*where, i, k)) for k, n in enumerate(shape)))
    return tuple(shapes)


def _groups(read: PlainReader, data: Mapping) -> dict[str, tuple[int, ...]]:
    """Process group name -> its member ranks, from `pg_config` (ranks as a list or as the
    string "[0, 1, 2]" that recent versions write)."""
    config = data.get("pg_config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise read.malformed(("pg_config",), config, "a dict")
    read.spend(len(config))
    groups = {}
    for name, raw in config.items():
        if not isinstance(name, str | int) or isinstance(name, bool):
            raise read.malformed(("pg_config",), name, "a process group name")
        where: Where = ("pg_config", str(name))
        ranks = read.mapping(raw, where).get("ranks")
        if isinstance(ranks, str):
            ranks = [int(r) for r in re.findall(r"\d{1,18}", ranks)]
        elif ranks is not None and not isinstance(ranks, list | tuple):
            raise read.malformed((*where, "ranks"), ranks, "a list of ranks")
        read.spend(len(ranks or ()))
        groups[str(name)] = tuple(sorted({read.as_int(r, (*where, "ranks", k))
                                          for k, r in enumerate(ranks or ())}))
    return groups


def _members(dumps: dict[int, Dump], pg: str) -> tuple[int, ...]:
    for dump in dumps.values():
        if dump.groups.get(pg):
            return dump.groups[pg]
    return tuple(sorted(dumps))


# what the ranks must agree on, in the order a disagreement is reported, and its wording
_CHECKS = (("type-mismatch", ("op",), "ranks called different collectives"),
           ("size-mismatch", ("input_sizes", "output_sizes"), "ranks passed different tensor "
                                                              "sizes"))


def first_mismatch(dumps: dict[int, Dump]) -> CollectiveMismatch | None:
    """Walk each process group's collectives by sequence number across ranks."""
    by_pg: dict[str, dict[int, dict[int, Collective]]] = defaultdict(lambda: defaultdict(dict))
    for rank, dump in dumps.items():
        for collective in dump.collectives:
            by_pg[collective.process_group][collective.seq][rank] = collective
    found = [m for pg, sequence in by_pg.items()
             if (m := _group_mismatch(dumps, pg, sequence)) is not None]
    return min(found, key=lambda m: m.seq) if found else None


def _group_mismatch(dumps: dict[int, Dump], pg: str,
                    sequence: dict[int, dict[int, Collective]]) -> CollectiveMismatch | None:
    """The first collective of one process group the ranks disagree on."""
    members = tuple(r for r in _members(dumps, pg) if r in dumps) or tuple(sorted(dumps))
    for seq in sorted(sequence):
        entries = sequence[seq]
        op = next(iter(entries.values())).op
        missing = tuple(r for r in members if r not in entries)
        if missing:
            return CollectiveMismatch("missing-ranks", pg, seq, op, missing, members,
                                      f"ranks {list(missing)} never joined")
        for disagreement, keys, detail in _CHECKS:
            odd = next((o for key in keys if (o := _odd_ranks(entries, key))), ())
            if odd:
                return CollectiveMismatch(disagreement, pg, seq, op, odd, members, detail)
        odd = _odd_ranks(entries, "state")
        if odd:
            states = {r: entries[r].state for r in odd}
            return CollectiveMismatch("state-mismatch", pg, seq, op, odd, members,
                                      f"states {states}: these ranks are behind")
    return None


def _odd_ranks(entries: dict[int, Collective], key: str) -> tuple[int, ...]:
    """The minority ranks when the ranks disagree on `key`."""
    groups: dict[object, list[int]] = defaultdict(list)
    for rank, entry in entries.items():
        groups[getattr(entry, key)].append(rank)
    if len(groups) < 2:
        return ()
    majority = max(groups.values(), key=len)
    return tuple(sorted(r for ranks in groups.values() if ranks is not majority for r in ranks))


def flight_record(dumps: dict[int, Dump]) -> FlightRecord:
    """The dumps' ranks and their first mismatch."""
    return FlightRecord(tuple(sorted(dumps)), first_mismatch(dumps))
