"""What a round costs: measured cost profiles, a roofline of named accelerators, and the latency model."""
