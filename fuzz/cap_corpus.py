#!/usr/bin/env python3
"""Cap a fuzz corpus at CAP files: greedy set cover over a libFuzzer merge control file.

`cargo fuzz cmin` keeps every input that adds a feature, which for these targets is 300-550
files. This picks, again and again, the input that adds the most edges not yet covered (the
smaller one on a tie) until every edge is covered or CAP files are chosen, and copies those
to OUTDIR. Usage (see the fuzzing section of RELIABILITY.md):

    python3 fuzz/cap_corpus.py CONTROL_FILE CAP OUTDIR
"""
import sys, shutil, os
ctl, cap, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(ctl).read().split('\n')
nfiles = int(lines[0]); files = lines[2:2+nfiles]
feats = {}
for l in lines[2+nfiles:]:
    p = l.split()
    if p and p[0] in ('FT', 'COV'):
        feats.setdefault(int(p[1]), set()).update((p[0], x) for x in p[2:])
total = set().union(*feats.values()) if feats else set()
covered, chosen = set(), []
while len(chosen) < cap:
    best = max(feats, key=lambda i: (sum(10 if k == 'COV' else 1 for k, _ in feats[i] - covered), -os.path.getsize(files[i])), default=None)
    if best is None or not (feats[best] - covered): break
    covered |= feats.pop(best); chosen.append(best)
os.makedirs(out, exist_ok=True)
for i in chosen: shutil.copy(files[i], os.path.join(out, os.path.basename(files[i])))
edges = lambda s: len([f for f in s if f[0] == "COV"])
print(f"{len(chosen)} files cover {edges(covered)}/{edges(total)} edges, {len(covered) - edges(covered)}/{len(total) - edges(total)} features, {sum(os.path.getsize(files[i]) for i in chosen)} bytes")
