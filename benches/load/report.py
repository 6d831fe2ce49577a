"""Turns the per-round results of benches/load/run.sh into the markdown report.

Input: a TSV with one row per (round, target): wrk's request count, duration and
latency percentiles (microseconds), CPU clock ticks of the proxy and of the upstream
over the run, wrk's own CPU (ms), the machine's busy ticks, and flags. Rounds with flags
(non-2xx answers, socket errors) are left out of the medians.
"""

import argparse
import csv
import statistics

LABELS = {
    "a": "(a) upstream direct (nginx `return 200`)",
    "b": "(b) nginx hop",
    "c": "(c) bare Pingora",
    "d": "(d) drawbridge, public route, `RUST_LOG=warn`",
    "d+log": "(d+log) drawbridge, `RUST_LOG=info`, access log to /dev/null",
    "d+tls": "(d+tls) drawbridge, public route, TLS listener (HTTPS, kept alive)",
    "e": "(e) drawbridge, full pipeline, `RUST_LOG=warn`",
    "e+audit": "(e+audit) drawbridge, full pipeline, `RUST_LOG=warn,audit=info` to /dev/null",
    "c@ref": "(c@ref) the reference bare Pingora (`--ref-bare`)",
    "d@ref": "(d@ref) the reference binary (`--ref-bin`), public route",
    "e@ref": "(e@ref) the reference binary (`--ref-bin`), full pipeline",
}
ORDER = ["a", "b", "c", "d", "d+log", "d+tls", "e", "e+audit", "c@ref", "d@ref", "e@ref"]


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--rate-results")
    p.add_argument("--clk-tck", type=int, required=True)
    p.add_argument("--rss", default="")
    p.add_argument("--meta", action="append", default=[])
    p.add_argument("--pipeline", action="append", default=[])
    return p.parse_args()


def load_rows(path, clk):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            req = int(r["requests"])
            secs = int(r["duration_us"]) / 1e6
            tick_us = 1e6 / clk
            wrk_ticks = int(r["wrk_ms"]) * clk / 1000
            others = (
                int(r["machine_ticks"])
                - int(r["proxy_ticks"])
                - int(r["upstream_ticks"])
                - wrk_ticks
            )
            rows.append(
                {
                    "round": int(r["round"]),
                    "target": r["target"],
                    "rps": req / secs if secs else 0.0,
                    "p50": int(r["p50_us"]),
                    "p99": int(r["p99_us"]),
                    "proxy_cpu": int(r["proxy_ticks"]) * tick_us / req if req else 0.0,
                    "upstream_cpu": int(r["upstream_ticks"]) * tick_us / req if req else 0.0,
                    "wrk_cpu": int(r["wrk_ms"]) * 1000 / req if req else 0.0,
                    "other_cores": max(others, 0) / clk / secs if secs else 0.0,
                    "flags": "" if r["flags"] == "-" else r["flags"],
                }
            )
    return rows


def medians(rows):
    out = {}
    for t in ORDER:
        mine = [r for r in rows if r["target"] == t]
        if not mine:
            continue
        clean = [r for r in mine if not r["flags"]]
        used = clean or mine
        out[t] = {
            k: statistics.median(r[k] for r in used)
            for k in ("rps", "p50", "p99", "proxy_cpu", "upstream_cpu", "other_cores")
        }
        out[t]["rounds"] = f"{len(clean)}/{len(mine)}"
        out[t]["all_flagged"] = not clean
    return out


def load_rate_rows(path):
    """The FIXED_RATE lines of benches/load/fixed_rate.py, one per (round, target)."""
    rows = []
    if not path:
        return rows
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            fields = dict(kv.split("=", 1) for kv in r["line"].split()[1:] if "=" in kv)
            rows.append({"round": int(r["round"]), "target": r["target"], **fields})
    return rows


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def rate_medians(rows):
    out = {}
    for t in ORDER:
        mine = [r for r in rows if r["target"] == t]
        if not mine:
            continue
        clean = [r for r in mine if number(r.get("errors")) == 0 and number(r.get("non2xx")) == 0]
        used = clean or mine
        med = {}
        for k in ("achieved_rps", "p50_us", "p90_us", "p99_us", "p999_us", "client_demand_pct"):
            values = [v for v in (number(r.get(k)) for r in used) if v is not None]
            med[k] = statistics.median(values) if values else None
        med["rounds"] = f"{len(clean)}/{len(mine)}"
        out[t] = med
    return out


def print_rate_section(rows, meta):
    med = rate_medians(rows)
    if not med:
        return
    print("## Fixed rate, below saturation (medians over rounds)\n")
    print(
        f"{meta.get('rate', '')}. Open loop: latency runs from each request's *scheduled* "
        "send time to the end of its answer (benches/load/fixed_rate.py), so it includes "
        "the generator's own wake-up delay (a few hundred µs here), the same for every "
        "target; compare targets, or read the columns against (a).\n"
    )
    print(
        "| target | achieved req/s | p50 µs | p90 µs | p99 µs | p99.9 µs "
        "| p50 added vs (a) | p99 added vs (a) | p50 added vs (b) | rounds used |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def fmt(v):
        return "–" if v is None else f"{v:.0f}"

    def added(t, base, k):
        x, y = med[t].get(k), med.get(base, {}).get(k)
        return "–" if x is None or y is None or t == base else f"{x - y:+.0f}"

    for t, m in med.items():
        print(
            f"| {LABELS[t]} | {fmt(m['achieved_rps'])} | {fmt(m['p50_us'])} | {fmt(m['p90_us'])} "
            f"| {fmt(m['p99_us'])} | {fmt(m['p999_us'])} | {added(t, 'a', 'p50_us')} "
            f"| {added(t, 'a', 'p99_us')} | {added(t, 'b', 'p50_us')} | {m['rounds']} |"
        )
    print()
    demand = [m["client_demand_pct"] for m in med.values() if m["client_demand_pct"] is not None]
    if demand and max(demand) >= 90:
        print(
            "⚠ The generator was running or waiting for a CPU ≥ 90% of the time in some "
            "runs: its own delays inflate those latencies.\n"
        )


def ratio(x, y):
    return f"{x / y:.2f}" if x and y else "–"


def main():
    a = parse_args()
    meta = dict(m.split("=", 1) for m in a.meta)
    rows = load_rows(a.results, a.clk_tck)
    med = medians(rows)
    b = med.get("b")

    print("# drawbridge load benchmark: last run\n")
    for key in ("date", "commit", "profile", "ref", "ref_bare", "machine", "load", "rustc", "nginx", "wrk", "rate", "pin", "command"):
        if key in meta:
            print(f"- {key}: {meta[key]}")
    print()

    print("## Ratios (medians)\n")
    print("| ratio | throughput | proxy CPU per request | goal |")
    print("|---|---|---|---|")

    def ratio_row(name, x, y, goal=""):
        if x in med and y in med:
            print(
                f"| {name} | {ratio(med[x]['rps'], med[y]['rps'])} "
                f"| {ratio(med[x]['proxy_cpu'], med[y]['proxy_cpu'])} | {goal} |"
            )

    ratio_row("(d) / (c): drawbridge vs bare Pingora", "d", "c", "throughput ≥ 0.97")
    ratio_row("(d) / (b): drawbridge vs nginx hop", "d", "b", "")
    ratio_row("(c) / (b): bare Pingora vs nginx hop", "c", "b", "")
    ratio_row("(d+log) / (d): cost of the access log", "d+log", "d", "")
    ratio_row("(d+tls) / (d): cost of the TLS listener", "d+tls", "d", "")
    ratio_row("(e) / (c): full pipeline vs bare Pingora", "e", "c", "")
    ratio_row("(e) / (d): full pipeline vs public route", "e", "d", "")
    ratio_row("(e) / (b): full pipeline vs nginx hop", "e", "b", "≥ 1.00 (moonshot)")
    ratio_row("(e+audit) / (e): cost of the audit events", "e+audit", "e", "")
    ratio_row("(d) / (d@ref): this build vs the reference, public route", "d", "d@ref", "")
    ratio_row("(e) / (e@ref): this build vs the reference, full pipeline", "e", "e@ref", "")
    ratio_row("(c) / (c@ref): bare Pingora, this build vs the reference", "c", "c@ref", "")
    ratio_row("(d@ref) / (c@ref): the reference drawbridge vs its bare Pingora", "d@ref", "c@ref", "")
    ratio_row("(e@ref) / (c@ref): the reference full pipeline vs its bare Pingora", "e@ref", "c@ref", "")
    if "a" in med and b:
        print(f"| (a) / (b): upstream direct vs nginx hop | {ratio(med['a']['rps'], b['rps'])} | – | |")
    print()

    print("## Per target (medians over rounds)\n")
    print(
        "| target | req/s | req/s vs (b) | p50 µs | p99 µs | proxy CPU µs/req "
        "| CPU vs (b) | upstream CPU µs/req | rounds used |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in ORDER:
        if t not in med:
            continue
        m = med[t]
        proxy_cpu = f"{m['proxy_cpu']:.1f}" if t != "a" else "– (no proxy)"
        cpu_vs_b = ratio(m["proxy_cpu"], b["proxy_cpu"]) if b and t != "a" else "–"
        warn = " ⚠ all rounds flagged" if m["all_flagged"] else ""
        print(
            f"| {LABELS[t]} | {m['rps']:.0f} | {ratio(m['rps'], b['rps']) if b else '–'} "
            f"| {m['p50']:.0f} | {m['p99']:.0f} | {proxy_cpu} | {cpu_vs_b} "
            f"| {m['upstream_cpu']:.1f} | {m['rounds']}{warn} |"
        )
    print()

    noise = [r["other_cores"] for r in rows]
    if noise:
        print(
            f"Background load during the measured runs (CPU used by anything but the proxy, "
            f"the upstream and wrk): median {statistics.median(noise):.2f} cores, "
            f"max {max(noise):.2f}."
        )
        if statistics.median(noise) > 0.1:
            print(
                "⚠ The machine was busy: absolute numbers and throughput ratios are noisy; "
                "CPU per request is the steadier measure."
            )
        print()

    if "d" in med and "d+log" in med:
        cost = med["d+log"]["proxy_cpu"] - med["d"]["proxy_cpu"]
        print(f"Access log at `info`: {cost:+.1f} µs CPU per request.\n")
    for x, y, what in (
        ("d+tls", "d", "The TLS listener (HTTPS, kept-alive connections) over plain HTTP"),
        ("e", "d", "The full pipeline (token, policy, exchange, session) over the public route"),
        ("e+audit", "e", "Audit events at `info`"),
    ):
        if x in med and y in med:
            cost = med[x]["proxy_cpu"] - med[y]["proxy_cpu"]
            print(f"{what}: {cost:+.1f} µs CPU per request.\n")

    print_rate_section(load_rate_rows(a.rate_results), meta)

    if a.pipeline:
        print("## Full pipeline checks\n")
        print(
            "Before measuring, each (e) gateway answered `initialize` and one `tools/call` "
            "with 200 and the upstream's body; the upstream received the exchanged token "
            "(`Bearer upstream-token`) and its own session id, and a second `tools/call` "
            "did not call the token endpoint. During the run:\n"
        )
        for line in a.pipeline:
            print(f"- {line}")
        print()

    if a.rss.strip():
        print("## Resident memory after the run (VmRSS, process and children)\n")
        print("| process | RSS |")
        print("|---|---:|")
        for item in a.rss.split():
            name, kb = item.split("=")
            print(f"| {name} | {int(kb) / 1024:.1f} MiB |")
        print()

    print("## Every round\n")
    print(
        "`other load` is CPU used on the machine during the run by anything but the proxy, "
        "the upstream and wrk (other builds, the harness itself), in cores: the noise gauge.\n"
    )
    print(
        "| round | target | req/s | p50 µs | p99 µs | proxy CPU µs/req "
        "| upstream CPU µs/req | wrk CPU µs/req | other load (cores) | flags |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in sorted(rows, key=lambda r: (r["round"], ORDER.index(r["target"]))):
        print(
            f"| {r['round']} | {r['target']} | {r['rps']:.0f} | {r['p50']} | {r['p99']} "
            f"| {r['proxy_cpu']:.1f} | {r['upstream_cpu']:.1f} | {r['wrk_cpu']:.1f} "
            f"| {r['other_cores']:.2f} | {r['flags'] or '–'} |"
        )
    print()
    print("## Not measured in this run\n")
    if "e" not in med:
        print("- (e) the full pipeline (auth, policy, sessions, exchange): not in `--targets`.")
    if not a.rate_results or not load_rate_rows(a.rate_results):
        print("- Added latency at a fixed rate: skipped (`--rate 0`).")
    print("- Memory with many idle event streams: `benches/load/idle_streams.py` measures it")
    print("  separately (docs/BENCHMARKS.md).")


if __name__ == "__main__":
    main()
