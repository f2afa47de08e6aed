"""`make bench`: every benchmark, one after the other, printing its figures (see BENCHMARKS.md)."""
from . import cold_start, dynamodb_cost, embedded, handler_overhead, scaling, throughput

if __name__ == "__main__":
    print("== Cold start (bench/cold_start.py)")
    cold_start.run()
    print("\n== Handler overhead, DynamoDB canned (bench/handler_overhead.py)")
    handler_overhead.run()
    print("\n== DynamoDB work and cost per RPC (bench/dynamodb_cost.py)")
    dynamodb_cost.run()
    print("\n== 100 vs 100,000 reservations on one resource (bench/scaling.py)")
    scaling.run()
    print("\n== Reserve throughput, hot vs distinct resources (bench/throughput.py)")
    throughput.run()
    print("\n== The embedded DynamoDB through make serve: empty vs 100,000 loaded, memory, stop (bench/embedded.py)")
    embedded.run()
