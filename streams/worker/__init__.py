"""`callwatch worker`: the Faust worker of the distributed pipeline (docs/worker.md)."""
