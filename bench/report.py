#!/usr/bin/env python3
"""Turns the raw output of bench/run.sh (hyperfine JSON, GNU time, perf stat CSV, callgrind files) into
bench/results/<date>.md, <date>.json and <date>.png (gnuplot). Usage: report.py OUT_DIR RESULTS_DIR."""
import datetime
import glob
import json
import os
import re
import statistics
import subprocess
import sys

out, results = sys.argv[1], sys.argv[2]
os.makedirs(results, exist_ok=True)
stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
facts = dict(l.rstrip("\n").split("=", 1) for l in open(f"{out}/facts.txt") if "=" in l)
failures = open(f"{out}/failures.txt").read().splitlines() if os.path.exists(f"{out}/failures.txt") else []

GROUPS = [  # file name, label, reference command for the ratio column
    ("create", "create (busybox true)", "amphi"),
    ("start", "start", "amphi"),
    ("delete", "delete (stopped container)", "amphi"),
    ("cycle", "create+start+delete (sh -c '... && ... && ...')", "amphi"),
    ("run-hello", "run hello (busybox echo)", "amphi"),
    ("wasm", "run hello: Linux vs Wasm (amphi)", "amphi linux hello"),
    ("version", "--version (binary start-up)", "amphi"),
    ("cycle-ro", "create+start+delete, binaries on a read-only bind mount (no CVE-2019-5736 re-exec)",
     "amphi"),
]
ms = lambda s: s * 1000.0


def load(view, name):
    """The runs of every round of a group (files <view>--<name>.r<N>.json), pooled per command."""
    times, order = {}, []
    for p in sorted(glob.glob(f"{out}/{view}--{name}.r*.json")):
        for r in json.load(open(p))["results"]:
            if r["command"] not in times:
                order.append(r["command"])
            times.setdefault(r["command"], []).extend(r["times"])
    rows = []
    for c in order:
        t = times[c]
        rows.append({"command": c, "median_ms": ms(statistics.median(t)), "mean_ms": ms(statistics.mean(t)),
                     "sd_ms": ms(statistics.stdev(t)) if len(t) > 1 else 0.0, "min_ms": ms(min(t)),
                     "max_ms": ms(max(t)), "runs": len(t)})
    return rows


rounds = len({m.group(1) for p in glob.glob(f"{out}/*--*.r*.json") if (m := re.search(r"\.r(\d+)\.json$", p))})
timings = []
for view in ("legacy", "hybrid"):
    for name, label, ref in GROUPS:
        rows = load(view, name)
        refm = next((r["median_ms"] for r in rows if r["command"] == ref), None)
        for r in rows:
            r.update(group=name, label=label, view=view, ratio=(r["median_ms"] / refm) if refm else None)
            timings.append(r)


def med(view, group, cmd):
    return next((r["median_ms"] for r in timings if r["view"] == view and r["group"] == group
                 and r["command"] == cmd), None)


conc_n = int(os.environ.get("conc", "50"))
concurrent = []
for p in sorted(glob.glob(f"{out}/legacy--concurrent-*.json")):
    r = json.load(open(p))["results"][0]
    total = ms(r["median"])
    single = med("legacy", "cycle", r["command"])
    per = total / conc_n
    concurrent.append({"runtime": r["command"], "containers": conc_n, "runs": len(r["times"]),
                       "total_median_ms": total, "total_min_ms": ms(r["min"]), "per_container_ms": per,
                       "single_cycle_median_ms": single, "per_container_vs_single": per / single if single else None})

rss = []
for p in sorted(glob.glob(f"{out}/rss-*.txt")):
    v = [int(x) for x in open(p).read().split() if x.isdigit()]
    if v:
        rss.append({"runtime": p.split("rss-")[1][:-4], "runs": len(v), "median_kib": statistics.median(v),
                    "min_kib": min(v), "max_kib": max(v)})

def perf_csv(path, key, name):
    """One `perf stat -x,` CSV (task-clock, page-faults, context-switches) as a row."""
    row = {key: name}
    for l in open(path):
        f = l.strip().split(",")
        if len(f) >= 4 and f[2] in ("task-clock", "page-faults", "context-switches"):
            try:
                row[f[2]] = float(f[0])
                row[f[2] + "_var"] = f[3]
            except ValueError:
                row[f[2]] = None
    return row


cpu = [perf_csv(p, "runtime", p.split("perf-")[1][:-4]) for p in sorted(glob.glob(f"{out}/perf-*.csv"))]
cpu_run = [perf_csv(p, "workload", p.split("perfrun-")[1][:-4]) for p in sorted(glob.glob(f"{out}/perfrun-*.csv"))]

instr = []
for d in sorted(glob.glob(f"{out}/cg/*")):
    rt, label = os.path.basename(d).split("-", 1)
    if os.path.exists(f"{d}/FAILED"):
        instr.append({"runtime": rt, "what": label, "per_command_Ir": {}, "total_Ir": None,
                      "failed": open(f"{d}/FAILED", errors="replace").read().strip()})
        continue
    per = {}
    parts = 0
    for f in glob.glob(f"{d}/*.*"):
        cmd = os.path.basename(f).split(".")[0]
        if cmd == "log":
            continue
        for l in open(f, errors="replace"):
            if l.startswith("totals:"):
                per[cmd] = per.get(cmd, 0) + int(l.split()[1])
                parts += 1
    if per:
        instr.append({"runtime": rt, "what": label, "per_command_Ir": per, "total_Ir": sum(per.values()),
                      "dump_parts": parts})

sizes = [{"runtime": r, "bytes": int(facts.get(f"{r}_bytes", 0)), "shared_libs": int(facts.get(f"{r}_libs", 0))}
         for r in ("amphi", "runc", "crun")]


def ratio(a, b):
    return a / b if a and b else None


targets = [
    ("create+start+delete: amphi / crun <= 0.8", ratio(med("legacy", "cycle", "amphi"), med("legacy", "cycle", "crun")), 0.8),
    ("create+start+delete: amphi / runc <= 0.5", ratio(med("legacy", "cycle", "amphi"), med("legacy", "cycle", "runc")), 0.5),
    ("wasm hello cached / Linux hello <= 1.1", ratio(med("legacy", "wasm", "amphi wasm hello, cached"), med("legacy", "wasm", "amphi linux hello")), 1.1),
    ("wasm hello cold / Linux hello <= 2", ratio(med("legacy", "wasm", "amphi wasm hello, cold"), med("legacy", "wasm", "amphi linux hello")), 2.0),
] + [(f"concurrent {c['containers']}: {c['runtime']} per-container / single cycle <= 1.2",
      c["per_container_vs_single"], 1.2) for c in concurrent]
targets = [{"target": t, "measured": v, "limit": l, "pass": (v is not None and v <= l)} for t, v, l in targets]

data = {"date": stamp, "facts": facts, "failures": failures, "timings": timings, "concurrent": concurrent,
        "peak_rss_create": rss, "cpu_per_cycle_perf_stat": cpu, "cpu_per_run_hello_perf_stat": cpu_run, "instructions_callgrind": instr,
        "binary_sizes": sizes, "targets": targets}
json.dump(data, open(f"{results}/{stamp}.json", "w"), indent=1)

f2 = lambda x, d=2: "-" if x is None else f"{x:.{d}f}"
md = [f"# amphi vs runc vs crun — {stamp}", ""]
md += [f"amphi {facts.get('amphi_version')} (commit {facts.get('amphi_commit')}; [profile.release] "
       f"{facts.get('amphi_profile')}; {facts.get('amphi_link', 'link mode unknown')}), {facts.get('runc_version')}, {facts.get('crun_version')}; "
       f"{facts.get('hyperfine_version')}; kernel {facts.get('kernel')}, {facts.get('cpus')} CPUs shared with "
       f"other jobs (load at the end: {facts.get('loadavg')}). Command: `bench/run.sh {os.environ.get('runs', '')}`.", ""]
md += ["How: every runtime gets the same bundle (busybox-static rootfs shared read-only, `amphi spec` config "
       "with ociVersion 1.0.2, no terminal, its own cgroupsPath under /amphi-bench/) and its own --root, and "
       "runs from a copy of its binary whose pages were dropped from the page cache first (read back from disk "
       "at the first start, as after a boot: how a binary came into the page cache changes its start-up). "
       "**legacy** view: crun 1.8 refuses this hybrid host, so all three runtimes run inside one private mount "
       "namespace (`unshare -m`) where /sys/fs/cgroup/unified (cgroup2, hugetlb only) is unmounted: everyone "
       "sees plain cgroup v1 and uses the same v1 controllers. **hybrid** view: the unchanged host, amphi and "
       "runc only (crun says: `" + open(f"{out}/crun-hybrid.txt").read().strip().replace("\n", " ")[:120] + "`). "
       f"Times are whole processes (hyperfine -N, 2 warm-up runs), in {rounds} rounds "
       "of every group (the Wasm group: three slices of a third of the runs per round, each with its "
       "own warm-up runs and starting with another kind), each round starting with another runtime, "
       "all runs of all rounds pooled (so a busy spell "
       "of the shared machine lands on every runtime alike); ratio = median / median of the reference "
       "row (amphi, or amphi's Linux hello for the Wasm rows) in the same group and view. "
       "Binaries run as installed (writable), so crun and amphi re-execute themselves from a read-only view of "
       "their binary (crun: a temporary read-only bind mount; amphi: a read-only overlay), their defence "
       "against CVE-2019-5736; the read-only-bind-mount row shows both without that step, which each skips "
       "when its binary already is on a read-only mount.", ""]
if failures:
    md += ["**Failures:**", ""] + [f"- {x}" for x in failures] + [""]
md += ["## Targets", "", "| target | measured | pass |", "|---|---|---|"]
md += [f"| {t['target']} | {f2(t['measured'])} | {'yes' if t['pass'] else 'NO'} |" for t in targets]
md += ["", "## Times", "", "| command | view | runtime | median | mean ± sd | min | ratio vs amphi |",
       "|---|---|---|---|---|---|---|"]
for r in timings:
    md.append(f"| {r['label']} | {r['view']} | {r['command']} | {f2(r['median_ms'])} ms | "
              f"{f2(r['mean_ms'])} ± {f2(r['sd_ms'])} ms | {f2(r['min_ms'])} ms | "
              f"{f2(r['ratio']) + 'x' if r['ratio'] else '-'} |")
md += ["", f"## {conc_n} containers at once (legacy view)", "",
       f"`bench/concurrent.sh`: {conc_n} background `create && start` jobs, wait, then {conc_n} background "
       "`delete -f` jobs; hyperfine median of the whole. Single = the create+start+delete median above.", "",
       "| runtime | total median (min) | per container | single cycle | per container / single |",
       "|---|---|---|---|---|"]
md += [f"| {c['runtime']} | {f2(c['total_median_ms'], 0)} ms ({f2(c['total_min_ms'], 0)}) | "
       f"{f2(c['per_container_ms'])} ms | {f2(c['single_cycle_median_ms'])} ms | {f2(c['per_container_vs_single'])}x |"
       for c in concurrent]
md += ["", "## Peak RSS of `create`, binary size", "",
       "GNU time `%M` (max RSS of the runtime process and the helpers it reaps; the container's init is not "
       "reaped by it and not included), median of the runs.", "",
       "| runtime | peak RSS median (min–max) | binary | shared libraries |", "|---|---|---|---|"]
sz = {s["runtime"]: s for s in sizes}
for r in rss:
    s = sz.get(r["runtime"], {})
    size = f"{s['bytes'] / 1e6:.1f} MB | {s['shared_libs']}" if s else "(same binaries) |"
    if r["runtime"] == "amphi" and s and facts.get("amphi_full_bytes"):
        size = (f"{s['bytes'] / 1e6:.1f} MB (`amphi`) + {int(facts['amphi_full_bytes']) / 1e6:.1f} MB "
                f"(`amphi-full`, which runs create, run and exec) | {s['shared_libs']}")
    md.append(f"| {r['runtime']} | {r['median_kib'] / 1024:.1f} MiB ({r['min_kib'] / 1024:.1f}–"
              f"{r['max_kib'] / 1024:.1f}) | {size} |")
md += ["", "## CPU per create+start+delete (perf stat, software events; legacy view)", "",
       "Hardware counters are not available in this VM (`perf stat -e instructions` says <not supported>).", "",
       "| runtime | task-clock (CPU ms, all processes) | page faults | context switches |", "|---|---|---|---|"]
md += [f"| {c['runtime']} | {f2(c.get('task-clock'))} ({c.get('task-clock_var', '')}) | {f2(c.get('page-faults'), 0)} | "
       f"{f2(c.get('context-switches'), 0)} |" for c in cpu]
lin = next((c.get("task-clock") for c in cpu_run if c["workload"] == "linux"), None)
md += ["", "## CPU per `amphi run` hello, Linux and Wasm (perf stat, software events; legacy view)", "",
       "The wall-clock ratio of the Wasm and Linux hello depends on the load of the machine: when the other "
       "CPU is free, the processes of one `run` overlap; under load they run one after another and the wall "
       "ratio drifts toward the CPU ratio below.", "",
       "| workload | task-clock (CPU ms, all processes) | page faults | context switches | CPU ratio |",
       "|---|---|---|---|---|"]
md += [f"| {c['workload']} | {f2(c.get('task-clock'))} ({c.get('task-clock_var', '')}) | "
       f"{f2(c.get('page-faults'), 0)} | {f2(c.get('context-switches'), 0)} | "
       f"{f2(c['task-clock'] / lin) + 'x' if lin and c.get('task-clock') else 'n/a'} |" for c in cpu_run]
md += ["", "## Instructions (callgrind, every process of the runtime; legacy view)", "",
       "`valgrind --tool=callgrind --trace-children=yes`, with a dump (which zeroes the counters) before every "
       "fork/clone/exec because a forked child inherits its parent's counts; sum of all dumps. The output "
       "directory is bind-mounted into the container at the same path so the container's init still writes "
       "its profile after pivot_root; those bundles carry no rlimits (valgrind refuses RLIMIT_NOFILE hard "
       "changes). crun ran with `_LIBCONTAINER_CLONED_BINARY=1` from a read-only bind of its binary, which "
       "skips its re-exec through a file descriptor (which valgrind cannot follow): its figure excludes that "
       "step. runc cannot "
       "be counted: it re-execs /proc/self/exe for `runc init`, which under valgrind is valgrind's own tool "
       "binary and fails to load.", "",
       "| runtime | what | per command | total Ir |", "|---|---|---|---|"]
md += [f"| {i['runtime']} | {i['what']} | not counted: {i['failed']} | n/a |" if i.get("failed") else
       f"| {i['runtime']} | {i['what']} | " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in sorted(i["per_command_Ir"].items()))
       + f" | {i['total_Ir'] / 1e6:.2f} M |" for i in instr]
md += ["", "valgrind 3.19 (Debian 12) does not know openat2(2), which amphi's rootfs setup needs "
       "(RESOLVE_IN_ROOT): amphi's create fails under it, so its counts are n/a until a newer valgrind."]
md += ["", f"![chart]({stamp}.png)", ""]
open(f"{results}/{stamp}.md", "w").write("\n".join(md))

# Chart: medians of the legacy-view lifecycle groups, clustered by command.
rts = ["amphi", "runc", "crun"]
with open(f"{out}/chart.dat", "w") as f:
    f.write("group " + " ".join(rts) + "\n")
    for name, label, _ in GROUPS[:5]:
        vals = [med("legacy", name, r) for r in rts]
        f.write(f"\"{name}\" " + " ".join(f2(v) if v is not None else "NaN" for v in vals) + "\n")
    for c, tag in (("amphi wasm hello, cold", "wasm-cold"), ("amphi wasm hello, cached", "wasm-cached")):
        v = med("legacy", "wasm", c)
        f.write(f"\"{tag}\" " + (f2(v) if v is not None else "NaN") + " NaN NaN\n")
gp = f"""set terminal pngcairo size 1000,520 noenhanced
set output '{results}/{stamp}.png'
set title 'amphi vs runc vs crun: median wall time (ms), legacy view, {stamp}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel 'ms'
set grid ytics
set key top left
set xtics rotate by -20
plot '{out}/chart.dat' using 2:xtic(1) title 'amphi', '' using 3 title 'runc', '' using 4 title 'crun'
"""
subprocess.run(["gnuplot"], input=gp.encode(), check=False)
print(f"{results}/{stamp}.md")
print("\n".join(md))
