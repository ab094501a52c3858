"""Which axes of each wide tensor merge, so that every tensor of a graph fits Core ML's rank limit (5).

Backend-free: a graph pass (``rewrite/_rank.py``: FX, symbolic sizes) and a MIL pass (``coreml/_fold.py``: the
Core ML plugin, static sizes) describe their ops to one ``FoldPlan`` and read back each value's axis groups.

A wide value is held as a reshape of itself that merges adjacent axes and drops axes of static size 1; a reshape
keeps the row-major order, so the data does not move. Constraints, stated per op by the caller:

- ``pin(v, axes)``: an axis an op works on (select, slice, pad, concat, a scatter) stays a group of its own;
- ``link(u, w, m)``: axis a of u is axis m[a] of w (a permute, a pointwise op, a select dropping an axis): two
  adjacent kept axes of u merge only if their images are adjacent and in order in w, and then both merge or
  neither does (one union-find over the boundaries between adjacent kept axes);
- ``cut_apart(v, mapped)``: in v, an axis in ``mapped`` and its neighbour outside it stay apart (the axes an
  operand broadcasts along).

An axis of size 1 kept in one value (pinned) is kept in every value linked to it. Every boundary with no reason
to be cut merges. The plan is solved when first read (``groups``, ``too_wide``). ``too_wide()`` names a value that still keeps more than
``max_rank`` groups (with its extra axes, such as the (re, im) pair of a complex value).
"""
from __future__ import annotations

from typing import Dict, Hashable, Iterable, List, Optional, Sequence


def is_unit(size) -> bool:
    """A static size of 1 (a symbolic size never counts)."""
    return isinstance(size, int) and size == 1


class FoldPlan:
    def __init__(self, max_rank: int = 5):
        self.max_rank = max_rank
        self.shapes: Dict[Hashable, Sequence] = {}
        self.extra: Dict[Hashable, int] = {}
        self.pins: Dict[Hashable, set] = {}
        self.kept: Dict[Hashable, List[int]] = {}
        self._parent: Dict[tuple, tuple] = {}
        self._cut: Dict[tuple, bool] = {}
        self._links: List[tuple] = []
        self._apart: List[tuple] = []
        self._solved = False

    # ------------------------------------------------------------------ values
    def value(self, key, shape: Sequence, extra: int = 0) -> None:
        """A wide value: its sizes (ints, or symbolic sizes that are never 1) and axes it carries beyond them."""
        self.shapes[key], self.extra[key] = list(shape), extra

    def __contains__(self, key) -> bool:
        return key in self.shapes

    def pin(self, key, axes: Iterable[int]) -> None:
        if key in self.shapes:
            r = len(self.shapes[key])
            self.pins.setdefault(key, set()).update(int(a) % r for a in axes)
            self._solved = False

    def link(self, u, w, m: Dict[int, int]) -> None:
        """Axis a of u is axis m[a] of w. Only between two wide values (a value at full rank has no groups)."""
        if u in self.shapes and w in self.shapes:
            self._links.append((u, w, dict(m)))
            self._solved = False

    def cut_apart(self, key, mapped: Iterable[int]) -> None:
        """In ``key``, an axis in ``mapped`` and its neighbour outside it stay apart."""
        if key in self.shapes:
            self._apart.append((key, set(mapped)))
            self._solved = False

    # ------------------------------------------------------------------ solving
    def _solve(self) -> None:
        if self._solved:
            return
        self._parent, self._cut = {}, {}
        # kept axes: sizes other than a static 1, and pinned axes; an axis of size 1 kept in one value is kept in
        # every value linked to it (both sides of an op then hold the same axes)
        keep = {k: {d for d, n in enumerate(shape) if not is_unit(n)} | self.pins.get(k, set())
                for k, shape in self.shapes.items()}
        changed = True
        while changed:
            changed = False
            for u, w, m in self._links:
                for a, b in m.items():
                    if a in keep[u] and b not in keep[w]:
                        keep[w].add(b)
                        changed = True
                    elif b in keep[w] and a not in keep[u]:
                        keep[u].add(a)
                        changed = True
        self.kept = {k: sorted(v) for k, v in keep.items()}
        for key, pins in self.pins.items():
            kept = self.kept[key]
            for d in pins:
                i = kept.index(d)
                for j in (i - 1, i):
                    if 0 <= j < len(kept) - 1:
                        self._set_cut((key, kept[j], kept[j + 1]))
        for u, w, m in self._links:
            ku, kw = self.kept[u], self.kept[w]
            pairs_w = {(kw[j], kw[j + 1]) for j in range(len(kw) - 1)}
            matched = set()
            for j in range(len(ku) - 1):
                a, b = ku[j], ku[j + 1]
                if a in m and b in m and (m[a], m[b]) in pairs_w:
                    self._union((u, a, b), (w, m[a], m[b]))
                    matched.add((m[a], m[b]))
                else:
                    self._set_cut((u, a, b))
            for p in pairs_w - matched:
                self._set_cut((w,) + p)
        for key, mapped in self._apart:
            kept = self.kept[key]
            for j in range(len(kept) - 1):
                if (kept[j] in mapped) != (kept[j + 1] in mapped):
                    self._set_cut((key, kept[j], kept[j + 1]))
        self._solved = True

    def _find(self, k):
        self._parent.setdefault(k, k)
        while self._parent[k] != k:
            self._parent[k] = self._parent[self._parent[k]]
            k = self._parent[k]
        return k

    def _union(self, a, b) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[ra] = rb
            self._cut[rb] = self._cut.get(rb, False) or self._cut.get(ra, False)

    def _set_cut(self, k) -> None:
        self._cut[self._find(k)] = True

    def _is_cut(self, k) -> bool:
        return self._cut.get(self._find(k), False)

    # ------------------------------------------------------------------ the answer
    def groups(self, key) -> List[List[int]]:
        self._solve()
        kept = self.kept[key]
        if not kept:
            return []
        out = [[kept[0]]]
        for j in range(len(kept) - 1):
            if self._is_cut((key, kept[j], kept[j + 1])):
                out.append([kept[j + 1]])
            else:
                out[-1].append(kept[j + 1])
        return out

    def too_wide(self) -> Optional[Hashable]:
        self._solve()
        for key in self.shapes:
            if len(self.groups(key)) + self.extra[key] > self.max_rank:
                return key
        return None


def group_size(shape: Sequence, axes: Iterable[int]):
    """The size of a group of axes: the product of their sizes (ints or symbolic sizes)."""
    p = 1
    for d in axes:
        p = p * shape[d]
    return p


def permute_map(perm: Sequence[int]) -> Dict[int, int]:
    """Axis perm[j] of a permute's input is axis j of its result."""
    return {int(p): j for j, p in enumerate(perm)}


def group_perm(in_groups: List[List[int]], out_groups: List[List[int]], perm: Sequence[int]) -> List[int]:
    """The permutation of groups that a permutation of axes becomes (the groups were linked through it)."""
    where = {e: i for i, g in enumerate(in_groups) for e in g}
    return [where[int(perm[g[0]])] for g in out_groups]


def group_pad(groups: List[List[int]], per_axis: Dict[int, tuple]) -> List[int]:
    """A pad list in torch's order (last axis first) over the groups: a padded axis is a group of its own."""
    out: List[int] = []
    for g in reversed(groups):
        out += list(per_axis.get(g[0], (0, 0))) if len(g) == 1 else [0, 0]
    while out[-2:] == [0, 0]:
        out = out[:-2]
    return out
