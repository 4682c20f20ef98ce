"""Training drafters: distillation losses and loops, the drafter unrolled on its own outputs, acceptance heads."""
