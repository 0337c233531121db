#!/usr/bin/env bash
# Check the module import graph of src/, then of crates/fake/src/ (outside #[cfg(test)] blocks):
# prints every edge, then fails if any two top-level modules (folders) import each other, directly
# or through others, or if a module of src/ imports one above it in the layers below.
# Usage: scripts/check-imports.sh [-v]
set -euo pipefail
cd "$(dirname "$0")/.."
# Each crate separately: `crate::` names a module of its own crate.
for src in src crates/fake/src; do
python3 - "$src" "$@" <<'PY'
import os, re, sys
src = sys.argv[1]
verbose = "-v" in sys.argv
mods = {}
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(root, f)
        rel = path[len(src) + 1:-3]
        if rel.endswith("/mod"):
            rel = rel[:-4]
        if rel in ("main", "lib"):
            continue
        mods[rel.replace("/", "::")] = path
tops = {m.split("::")[0] for m in mods}
def owner(path_parts, here):
    # The longest known module that a `crate::a::b` path names.
    for n in range(len(path_parts), 0, -1):
        cand = "::".join(path_parts[:n])
        if cand in mods:
            return cand
    return None
edges = {m: set() for m in mods}
for m, path in mods.items():
    text = open(path).read()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    text = re.sub(r"//[^\n]*", "", text)
    parent = m.rsplit("::", 1)[0] if "::" in m else None
    for hit in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
        parts = hit.group(2).strip(":").split("::")
        if hit.group(1) == "super":
            if parent is None:
                continue
            parts = parent.split("::") + parts
        # `use crate::x::{a, b}` names only x; a brace list after it is items or submodules.
        target = owner(parts, m)
        if target and target != m and not m.startswith(target + "::") and not target.startswith(m + "::"):
            edges[m].add(target)
    # `use crate::x::{a::b, c}` forms
    for hit in re.finditer(r"\bcrate::(\w+)::\{([^}]*)\}", text):
        for item in hit.group(2).split(","):
            item = item.strip().split(" as ")[0]
            if not item:
                continue
            target = owner([hit.group(1)] + item.split("::"), m)
            if target and target != m and not target.startswith(m + "::") and not m.startswith(target + "::"):
                edges[m].add(target)
if verbose:
    for m in sorted(edges):
        print(f"{m} -> {', '.join(sorted(edges[m]))}")
# Collapse submodules into their top module for the circle check (source::api ↔ source is fine).
top_edges = {t: set() for t in tops}
for m, ts in edges.items():
    for t in ts:
        a, b = m.split("::")[0], t.split("::")[0]
        if a != b:
            top_edges[a].add(b)
# Find cycles with Tarjan's strongly connected components.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in top_edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))
for v in sorted(top_edges):
    if v not in index:
        strong(v)
if sccs:
    for c in sccs:
        print(f"{src}: import circle among:", " ".join(c))
    sys.exit(1)
# The product's layers, top to bottom, in the order of ARCHITECTURE.md: a module uses only the
# ones below it. A new top-level module must be placed here.
LAYERS = ["app", "demo", "run", "report", "error", "config", "cli", "source", "output", "deliver",
          "pacing", "ledger", "event", "words"]
if src == "src":
    unplaced = sorted(t for t in top_edges if t not in LAYERS)
    upward = sorted(f"{a} -> {b}" for a, ts in top_edges.items() for b in ts
                    if a in LAYERS and b in LAYERS and LAYERS.index(b) < LAYERS.index(a))
    if unplaced:
        print(f"{src}: modules not placed in LAYERS:", " ".join(unplaced))
    if upward:
        print(f"{src}: imports that go up a layer:", ", ".join(upward))
    if unplaced or upward:
        sys.exit(1)
print(f"{src}: no import circles among {len(top_edges)} modules" + (", none going up a layer" if src == "src" else ""))
PY
done
