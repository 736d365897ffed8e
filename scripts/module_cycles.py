#!/usr/bin/env python3
"""No import cycle between the top-level modules of any crate of ours.

For each crate, reads every module file (test modules and comments left
out), notes which other top-level modules it names (`crate::x`, or `super::x`
from a top-level module), and looks for strongly connected components.
Prints each cycle and exits 1 if there is one. Usage: scripts/module_cycles.py
[crate dirs...] (default: every workspace crate)."""
import os
import re
import sys

CRATES = ["proto", "net", "config", "store", "ingest", "origin", "edge", "client-lib", "loadtest", "."]


def modules(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                p = os.path.join(root, f)
                parts = os.path.relpath(p, src)[:-3].split("/")
                if parts[-1] in ("lib", "main", "mod"):
                    parts = parts[:-1]
                mods["::".join(parts)] = p
    return mods


def graph(crate):
    mods = modules(os.path.join(crate, "src"))
    tops = {m.split("::")[0] for m in mods if m}
    g = {t: set() for t in tops}
    for m, p in mods.items():
        if not m:
            continue
        t = m.split("::")[0]
        txt = open(p, encoding="utf-8").read()
        txt = re.split(r"#\[cfg\(test\)\]\s*mod tests", txt)[0]
        txt = re.sub(r"//[^\n]*", "", txt)
        names = re.findall(r"crate::(\w+)", txt)
        if "::" not in m:
            names += re.findall(r"super::(\w+)", txt)
        g[t] |= {u for u in names if u in tops and u != t}
    return g


def cycles(g):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    bad = 0
    for crate in sys.argv[1:] or CRATES:
        g = graph(crate)
        for comp in cycles(g):
            bad += 1
            print(f"{crate}: import cycle between {', '.join(comp)}")
            for a in comp:
                print(f"  {a} -> {', '.join(sorted(x for x in g[a] if x in comp))}")
    if bad:
        sys.exit(1)
    print(f"no import cycle in {len(sys.argv[1:] or CRATES)} crates")


main()
