"""What tests share and the library ships: tiny model pairs and exact laws, counting probes, chi-square tests."""
