"""The experiment library: what experiments share (configs, results, timing, τ estimates, profiles, studies, plots)."""
