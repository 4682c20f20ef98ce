"""Multi-device decoding: sharding handles and batches over a `(data, model)` mesh, and the memory planner."""
