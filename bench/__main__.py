"""`make bench`: every benchmark, one after the other, printing its figures."""
from . import query_scaling

if __name__ == "__main__":
    print("== Query read cost vs history (bench/query_scaling.py)")
    query_scaling.run()
