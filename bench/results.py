"""Rows for bench/all.sh's table: each bench script's summary calls record()."""
import os


def record(figure, ours, peer, ratio, goal):
    # bench/all.sh collects these rows (RESULTS=file): figure, ours, peer, ratio, goal.
    if os.environ.get("RESULTS"):
        with open(os.environ["RESULTS"], "a") as f:
            f.write(f"{figure}\t{ours}\t{peer}\t{ratio:.2f}\t{goal}\n")
