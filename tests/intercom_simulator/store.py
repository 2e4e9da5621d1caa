"""The conversation store: compact records, a sorted (updated_at, id) index, mutations.

One lock guards the data. Records are immutable (NamedTuple) and replaced on
change, so a snapshot of record references can be rendered outside the lock.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from . import histories
from .data import Rec, generate, new_record, part_edited, touched
from .query import Compiled

Key = tuple[int, int]
SORT_FIELDS = ("updated_at", "created_at", "id")


class Store:
    def __init__(
        self,
        seed: int,
        now: int,
        n: int,
        long_parts: int = 0,
        bad_data: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.clock = clock  # Intercom's clock: every updated_at and deleted_at the store sets itself
        self.lock = threading.RLock()
        recs, self._next_id = generate(seed, now, n, long_parts, bad_data)
        self.records: dict[int, Rec] = {r.id: r for r in recs}
        self.index: list[Key] = sorted((r.updated_at, r.id) for r in recs)
        self.deleted: dict[int, Rec] = {}
        self.deleted_index: list[Key] = []  # (deleted_at, id)
        self.facet_cache: dict[str, dict[Any, Any]] = {}  # searchable values not stored in Rec

    # ---- reads -------------------------------------------------------------
    def get(self, cid: int) -> Rec | None:
        with self.lock:
            return self.records.get(cid)

    def ids(self) -> list[str]:
        with self.lock:
            return [str(cid) for _, cid in self.index]

    def snapshot(self) -> list[Rec]:
        with self.lock:
            return [self.records[cid] for _, cid in self.index]

    def _bounds(self, lo: int | None, hi: int | None) -> tuple[int, int]:
        a = 0 if lo is None else bisect.bisect_left(self.index, (lo, -1))
        b = len(self.index) if hi is None else bisect.bisect_right(self.index, (hi, float("inf")))
        return a, max(a, b)

    def search(self, q: Compiled, field: str, descending: bool, offset: int, limit: int) -> tuple[int, list[Rec]]:
        """(total matches, the page of records) for a compiled query."""
        with self.lock:
            a, b = self._bounds(q.lo, q.hi)
            if q.pure_range and field == "updated_at":
                total = b - a
                if descending:
                    end = b - offset
                    keys = self.index[max(a, end - limit) : max(a, end)][::-1]
                else:
                    keys = self.index[a + offset : min(b, a + offset + limit)]
                return total, [self.records[cid] for _, cid in keys]
            candidates = [self.records[cid] for _, cid in self.index[a:b]]
        matches = [r for r in candidates if q.predicate(r)]  # outside the lock: records are immutable
        if field == "created_at":
            matches.sort(key=lambda r: (r.created_at, r.id))
        elif field == "id":
            matches.sort(key=lambda r: r.id)
        if descending:
            matches.reverse()
        return len(matches), matches[offset : offset + limit]

    def deleted_page(self, page: int, per_page: int, descending: bool) -> tuple[int, list[Rec]]:
        with self.lock:
            total = len(self.deleted_index)
            start = (page - 1) * per_page
            if descending:
                keys = self.deleted_index[::-1][start : start + per_page]
            else:
                keys = self.deleted_index[start : start + per_page]
            return total, [self.deleted[cid] for _, cid in keys]

    # ---- writes ------------------------------------------------------------
    def _replace(self, old: Rec | None, new: Rec) -> None:
        if old is not None:
            i = bisect.bisect_left(self.index, (old.updated_at, old.id))
            del self.index[i]
        self.records[new.id] = new
        bisect.insort(self.index, (new.updated_at, new.id))

    def touch(self, cid: int, at: int | None = None) -> int:
        with self.lock:
            old = self.records.get(cid)
            if old is None:
                raise KeyError(f"no live conversation {cid}")
            new = touched(old, self.seed, int(self.clock()) if at is None else int(at))
            self._replace(old, new)
            return new.updated_at

    def edit_part(self, cid: int, part_id: str, at: int | None = None) -> int:
        with self.lock:
            old = self.records.get(cid)
            if old is None:
                raise KeyError(f"no live conversation {cid}")
            new = part_edited(old, int(part_id) - cid * 1_000_000, int(time.time()) if at is None else int(at))
            self._replace(old, new)
            return new.updated_at

    def touch_random(self, rng: random.Random, count: int) -> int:
        """Touch `count` random live conversations now; returns how many changed."""
        with self.lock:
            if not self.index:
                return 0
            picks = rng.sample(range(len(self.index)), min(count, len(self.index)))
            cids = [self.index[i][1] for i in picks]
            for cid in cids:
                self.touch(cid)
            return len(cids)

    def delete(self, cid: int, at: int | None = None) -> None:
        with self.lock:
            old = self.records.pop(cid, None)
            if old is None:
                raise KeyError(f"no live conversation {cid}")
            del self.index[bisect.bisect_left(self.index, (old.updated_at, old.id))]
            when = int(self.clock()) if at is None else int(at)
            retained = random.Random(f"{self.seed}/{cid}/deleted").random() < 0.5
            self.deleted[cid] = old._replace(deleted_at=when, metrics_retained=retained)
            bisect.insort(self.deleted_index, (when, cid))

    def add_history(self, history: Any, cid: int | None = None) -> str:
        """A scripted conversation (histories.History): a new one, or `cid`'s history replaced (a new version)."""
        with self.lock:
            old = None if cid is None else self.records[cid]
            if cid is None:
                cid = self._next_id
                self._next_id += random.Random(f"{self.seed}/{cid}/gap").randint(1, 1500)
            self._replace(old, histories.record(cid, history, 0 if old is None else old.version + 1))
            return str(cid)

    def create(self, at: int | None = None) -> str:
        with self.lock:
            cid = self._next_id
            self._next_id += random.Random(f"{self.seed}/{cid}/gap").randint(1, 1500)
            self._replace(None, new_record(self.seed, cid, int(self.clock()) if at is None else int(at)))
            return str(cid)
