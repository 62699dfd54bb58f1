"""Prints the API read-path bench table from hey's and pgbench's outputs."""
import glob
import re
import sys

work, rate, seconds, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def hey(name):
    text = open(f"{work}/{name}.hey").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", text).group(1)) * 1000
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", text).group(1)) * 1000
    statuses = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", text))
    errors = sum(int(n) for code, n in statuses.items() if code != "200")
    return rps, p50, p99, errors


def pgbench(name):
    latencies = []
    for path in glob.glob(f"{work}/{name}.[0-9]*"):
        for line in open(path):
            fields = line.split()
            if len(fields) >= 6:
                latencies.append(int(fields[2]) / 1000)
    latencies.sort()
    text = open(f"{work}/{name}.pgbench").read()
    tps = float(re.search(r"tps = ([\d.]+)", text).group(1))
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    return tps, pick(0.50), pick(0.99), 0


print(f"\nGraphQL read path at a target of {rate} requests/s for {seconds} s each ({cores} cores; "
      "hey for HTTP, pgbench for the direct queries)\n")
print(f"{'query':<38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-200':>9}{'p50 ×':>8}{'p99 ×':>8}")
for query, label in [("order", "order(id) with lines and timeline"), ("products", "products(first: 20, filtered, by price)")]:
    api = hey(query)
    direct = pgbench(f"pg_{query}")
    print(f"{'GraphQL ' + query:<38}{api[0]:>9.0f}{api[1]:>9.2f}{api[2]:>9.2f}{api[3]:>9}"
          f"{api[1] / direct[1]:>8.2f}{api[2] / direct[2]:>8.2f}")
    print(f"{'  same SQL on PostgreSQL':<38}{direct[0]:>9.0f}{direct[1]:>9.2f}{direct[2]:>9.2f}{direct[3]:>9}{'1.00':>8}{'1.00':>8}")
    print(f"  ({label})")

print(f"\nOne client, back to back (no queueing: the cost of each layer)\n")
print(f"{'query':<38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p50 ×':>8}")
for query in ["order", "products"]:
    api = hey(f"{query}.single")
    direct = pgbench(f"pg_{query}.single")
    print(f"{'GraphQL ' + query:<38}{api[0]:>9.0f}{api[1]:>9.2f}{api[2]:>9.2f}{api[1] / direct[1]:>8.2f}")
    print(f"{'  same SQL on PostgreSQL':<38}{direct[0]:>9.0f}{direct[1]:>9.2f}{direct[2]:>9.2f}{'1.00':>8}")
