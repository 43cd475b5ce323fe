"""Draws the soak benchmark's series (examples/bench/soak): one column of panels per run.

    soak_chart.py OUT.png RUN.csv [RUN-budget.csv]
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MIB = 1024 * 1024
# The tables worth a line of their own; the rest are summed as "other".
TABLES = ["raw_signals", "incidents", "service_minutes", "signal_shared", "analysis_outbox", "problems"]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def column(rows, name, scale=1.0):
    out = []
    for row in rows:
        try:
            out.append(float(row.get(name, "nan")) / scale)
        except ValueError:
            out.append(float("nan"))
    return out


def draw(axes, rows, title):
    minutes = column(rows, "elapsed_s", 60.0)
    size, tables, memory, rate, polls, health = axes

    size.plot(minutes, column(rows, "db_bytes", MIB), label="database", color="black", linewidth=2)
    size.plot(minutes, column(rows, "db_max_bytes", MIB), label="largest in the minute", color="grey", linestyle=":")
    budget = column(rows, "budget_bytes", MIB)
    if budget and budget[0] > 0:
        size.plot(minutes, budget, label="RETENTION_MAX_DATABASE_SIZE", color="red", linestyle="--")
    size.set_ylabel("MiB")
    size.set_title(title)
    size.legend(fontsize=7)

    other = [0.0] * len(rows)
    for name in sorted({k[len("bytes_"):] for k in rows[0] if k.startswith("bytes_")}):
        values = column(rows, "bytes_" + name, MIB)
        if name in TABLES:
            tables.plot(minutes, values, label=name)
        else:
            other = [a + b for a, b in zip(other, values)]
    tables.plot(minutes, other, label="other tables", linestyle="--")
    tables.set_ylabel("MiB (with indexes, dead tuples)")
    tables.set_yscale("log")
    tables.legend(fontsize=6, ncol=2)

    memory.plot(minutes, column(rows, "rss_mib"), label="server RSS (MiB)", color="tab:purple")
    # Open pool connections on the same axis: a step in RSS that comes with more of them is the
    # pool's buffers (runs before the column existed draw nothing).
    memory.plot(minutes, column(rows, "pool_open"), label="pool connections", color="tab:gray", linestyle=":")
    cpu = memory.twinx()
    cpu.plot(minutes, column(rows, "cpu_cores"), label="server CPU (cores)", color="tab:orange")
    memory.set_ylabel("RSS MiB")
    cpu.set_ylabel("CPU cores")
    memory.legend(loc="upper left", fontsize=7)
    cpu.legend(loc="upper right", fontsize=7)

    acknowledged = column(rows, "ingest_per_s")
    rate.plot(minutes, acknowledged, label="signals acknowledged /s", color="tab:green")
    rate.set_ylabel("signals/s")
    rate.set_ylim(0, max([v for v in acknowledged if v == v] + [1.0]) * 1.25)
    rate.legend(fontsize=7)

    for name in sorted(k[len("p99_ms_"):] for k in rows[0] if k.startswith("p99_ms_")):
        polls.plot(minutes, column(rows, "p99_ms_" + name), label=name)
    polls.set_ylabel("poll p99 ms")
    polls.set_yscale("log")
    polls.legend(fontsize=6, ncol=2)

    failures = [0.0] * len(rows)
    for kind in ["missing", "incorrect", "duplicate", "expired_early"]:
        failures = [a + b for a, b in zip(failures, column(rows, "canary_" + kind))]
    health.plot(minutes, failures, label="canary missing+incorrect+duplicate+expired early", color="red")
    health.plot(minutes, column(rows, "server_errors"), label="5xx in the minute", color="black", linestyle="--")
    health.plot(minutes, column(rows, "evidence_incomplete"), label="evidence incomplete", color="tab:brown")
    health.set_ylabel("count")
    health.set_xlabel("minutes")
    health.legend(fontsize=6)


def main():
    out, paths = sys.argv[1], sys.argv[2:]
    fig, grid = plt.subplots(6, len(paths), figsize=(7 * len(paths), 20), squeeze=False, sharex="col")
    for i, path in enumerate(paths):
        rows = read(path)
        title = "with a size budget" if "budget" in path else "no size budget"
        draw([grid[r][i] for r in range(6)], rows, f"Soak: {title} ({len(rows)} min)")
    fig.tight_layout()
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main()
