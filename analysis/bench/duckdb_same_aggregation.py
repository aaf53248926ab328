"""The heavy part of `shardsweep bench-analysis`, written for DuckDB, on the same Parquet files.

Not part of the product: a yardstick for the analysis' speed. Run it with any Python that has
the `duckdb` package (pip install duckdb):

    python analysis/bench/duckdb_same_aggregation.py /tmp/store

It computes what the analysis computes over the store: per point and step the slowest rank's
phases (the critical path) and the max over ranks of every phase, then each node's straggler
score (forward time over the step's median rank, median over steady steps, ranks and points).
"""
import sys
import time

import resource

import duckdb

store = sys.argv[1].rstrip("/") + "/*.parquet"
con = duckdb.connect()
start = time.perf_counter()
con.execute(f"CREATE VIEW tidy AS SELECT * FROM read_parquet('{store}') WHERE metric IN ('time', 'wait')")
# Results are materialised as tables, as the analysis materialises data frames.
con.execute("""
    CREATE TABLE critical AS WITH slowest AS (
        SELECT point, step, arg_max(rank, value) AS rank FROM tidy WHERE phase = 'step' GROUP BY point, step)
    SELECT t.point, t.step, t.phase, t.value FROM tidy t JOIN slowest s USING (point, step, rank)
""")
con.execute("CREATE TABLE maxes AS SELECT point, step, phase, max(value) AS value FROM tidy GROUP BY point, step, phase")
summaries = time.perf_counter() - start
start = time.perf_counter()
con.execute("""
    CREATE TABLE nodes AS WITH forward AS (
        SELECT point, rank, hostname, step, value / median(value) OVER (PARTITION BY point, step) AS ratio
        FROM tidy WHERE phase = 'forward' AND step >= 2),
    ranks AS (SELECT point, rank, hostname, median(ratio) AS score FROM forward GROUP BY point, rank, hostname)
    SELECT hostname, median(score) AS score, max(score) AS worst, count(*) AS n FROM ranks GROUP BY hostname ORDER BY score DESC
""")
stragglers = time.perf_counter() - start
def rows(table):
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"duckdb {duckdb.__version__}: {summaries + stragglers:.2f} s (summaries {summaries:.2f} s, stragglers {stragglers:.2f} s), "
      f"{rows('critical')} critical rows, {rows('maxes')} max rows, {rows('nodes')} nodes, peak RSS {peak / 2**30:.2f} GiB")
