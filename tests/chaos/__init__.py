"""The chaos suite of issue 10: real workers, real Redis, simulators over HTTP, faults."""
