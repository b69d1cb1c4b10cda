"""NCCL Flight Recorder dumps (one pickle per rank): the first collective where the ranks
disagree, or where some ranks never arrived, as `torchfrtrace` would report it."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from forensics.artifacts.restricted import load_plain
from forensics.errors import InputError
from forensics.inputs.layouts import flight_dump_rank
from forensics.model import CollectiveMismatch, FlightRecord


def rank_of(path: Path) -> int | None:
    """The rank of a dump file given by name (any TORCH_NCCL_DEBUG_INFO_TEMP_FILE prefix)."""
    return flight_dump_rank(path.name, any_prefix=True)


def dump_files(paths: tuple[str, ...] | list[str]) -> list[Path]:
    """The dump files named, a folder standing for the dumps in it."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and rank_of(p) is not None)
        else:
            files.append(path)
    return files


def load_dumps(paths: list[Path]) -> dict[int, dict]:
    """rank -> dump, the rank read from the file name's trailing digits."""
    dumps = {}
    for path in paths:
        rank = rank_of(path)
        data = load_plain(path)
        if rank is None or not isinstance(data, dict) or "entries" not in data:
            raise InputError(f"{path}: not a Flight Recorder dump (no 'entries')")
        dumps[rank] = data
    return dumps


def _members(dumps: dict[int, dict], pg: str) -> tuple[int, ...]:
    for dump in dumps.values():
        config = (dump.get("pg_config") or {}).get(pg) or {}
        ranks = config.get("ranks") if isinstance(config, dict) else None
        if isinstance(ranks, str):
            ranks = [int(r) for r in re.findall(r"\d+", ranks)]
        if ranks:
            return tuple(sorted(ranks))
    return tuple(sorted(dumps))


def first_mismatch(dumps: dict[int, dict]) -> CollectiveMismatch | None:
    """Walk each process group's collectives by sequence number across ranks."""
    by_pg: dict[str, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for rank, dump in dumps.items():
        for entry in dump.get("entries") or []:
            if not isinstance(entry, dict) or entry.get("is_p2p"):
                continue
            pg = str(entry.get("pg_id", entry.get("process_group", ("0",))[0]))
            by_pg[pg][int(entry.get("collective_seq_id", -1))][rank] = entry
    found = []
    for pg, sequence in by_pg.items():
        members = tuple(r for r in _members(dumps, pg) if r in dumps) or tuple(sorted(dumps))
        for seq in sorted(sequence):
            entries = sequence[seq]
            any_entry = next(iter(entries.values()))
            op = str(any_entry.get("profiling_name", "?"))
            missing = tuple(r for r in members if r not in entries)
            if missing:
                found.append(CollectiveMismatch("missing-ranks", pg, seq, op, missing, members,
                                      f"ranks {list(missing)} never joined"))
                break
            odd = _odd_ranks(entries, "profiling_name")
            if odd:
                found.append(CollectiveMismatch("type-mismatch", pg, seq, op, odd, members,
                                      "ranks called different collectives"))
                break
            odd = _odd_ranks(entries, "input_sizes") or _odd_ranks(entries, "output_sizes")
            if odd:
                found.append(CollectiveMismatch("size-mismatch", pg, seq, op, odd, members,
                                      "ranks passed different tensor sizes"))
                break
            odd = _odd_ranks(entries, "state")
            if odd:
                states = {r: entries[r].get("state") for r in odd}
                found.append(CollectiveMismatch("state-mismatch", pg, seq, op, odd, members,
                                      f"states {states}: these ranks are behind"))
                break
    return min(found, key=lambda m: m.seq) if found else None


def _odd_ranks(entries: dict[int, dict], key: str) -> tuple[int, ...]:
    """The minority ranks when the ranks disagree on `key`."""
    groups: dict[str, list[int]] = defaultdict(list)
    for rank, entry in entries.items():
        groups[repr(entry.get(key))].append(rank)
    if len(groups) < 2:
        return ()
    majority = max(groups.values(), key=len)
    return tuple(sorted(r for ranks in groups.values() if ranks is not majority for r in ranks))


def flight_record(dumps: dict[int, dict]) -> FlightRecord:
    """The dumps' ranks and their first mismatch."""
    return FlightRecord(tuple(sorted(dumps)), first_mismatch(dumps))
