"""Roofline cost profiles: what a call would cost on a named accelerator, from its spec-sheet memory bandwidth and
peak FLOP rate, for the latency model (`specjax.costs.latency`) to compare devices.

A call over T new tokens per row, B rows, S cache slots, costs

    max(bytes / bandwidth, flops / peak) + kernels * launch

- flops = 2 B T (weights touched per token) + 4 B T S H d_h L   (matmuls; attention scores and values);
- bytes = weight bytes (read once per call) + 2 L B S H_kv d_h b (the KV cache read) + 4 B T V' (float32 logits);
- kernels = a fixed count per layer and per call (fused ops XLA launches), each paying `launch` seconds.
b = bytes per weight (2: bfloat16). The spec-sheet figures are in `ACCELERATORS` with their sources; the launch
cost and kernel counts are assumptions (stated there), since no spec sheet gives them, and they dominate small
models: SmolLM2-135M reads 0.27 GB of bfloat16 weights per call, 56 µs on an H200.
"""
from __future__ import annotations

from dataclasses import dataclass

from specjax.model.config import ModelConfig
from specjax.costs.profile import CostCurve, DeviceProfile, ProfileEntry
from specjax.validation import check_int

KERNELS_PER_LAYER = 10
"""Fused kernels per decoder layer (2 norms, q/k/v, rotary, scores + softmax, values, o, gate/up, down): an
assumption from XLA's typical fusion of this layer."""
KERNELS_PER_CALL = 4
"""Embedding, final norm, head, and the cache write."""
KERNELS_PER_SAMPLE = 3
"""Warp (softmax), sample or top-k, and the gather of a drafter step or tree level."""
KERNELS_PER_ROUND = 20
"""Bookkeeping of a decode round (acceptance rule, commit, token buffer, stopping test): an assumption."""


@dataclass(frozen=True)
class Accelerator:
    """Spec-sheet figures of one accelerator, and the launch cost assumed for it."""

    name: str
    """Its name in words."""
    bandwidth: float
    """Memory bandwidth, bytes/s (spec sheet)."""
    peak_flops: float
    """Dense bfloat16 peak, FLOP/s (spec sheet; without structured sparsity)."""
    launch: float
    """Seconds per kernel launch inside a compiled loop (an assumption, not a spec-sheet figure)."""
    source: str
    """Where the figures come from."""


ACCELERATORS = {
    "h100": Accelerator("NVIDIA H100 SXM5 80GB", 3.35e12, 989e12, 4e-6,
                        "NVIDIA H100 Tensor Core GPU datasheet: 3.35 TB/s HBM3, 989 TFLOPS BF16 dense (1,979 with "
                        "sparsity); launch ~4 µs assumed (CUDA launch latency)"),
    "h200": Accelerator("NVIDIA H200 SXM 141GB", 4.8e12, 989e12, 4e-6,
                        "NVIDIA H200 Tensor Core GPU datasheet: 4.8 TB/s HBM3e, 989 TFLOPS BF16 dense (1,979 with "
                        "sparsity); launch ~4 µs assumed (CUDA launch latency)"),
    "tpu-v5e": Accelerator("Google Cloud TPU v5e", 8.19e11, 1.97e14, 2e-6,
                           "Cloud TPU v5e documentation: 819 GB/s HBM2, 197 TFLOP/s BF16 per chip; ~2 µs per op "
                           "assumed (ops of one compiled program, no host launch)"),
}


@dataclass(frozen=True)
class ModelShape:
    """What a roofline needs to know of a model."""

    layers: int
    """L: decoder layers."""
    layer_params: int
    """Weights of all layers (and any input projection), touched once per token."""
    head_rows: int
    """V': vocabulary rows the head scores (a VocabTrim head scores fewer than V)."""
    d_model: int
    """D: width."""
    n_kv_heads: int
    """H_kv: key/value heads."""
    n_heads: int
    """H: query heads."""
    head_dim: int
    """d_h."""

    @property
    def params(self) -> int:
        """Weights read per call (layers + head; a tied embedding is the head)."""
        return self.layer_params + self.head_rows * self.d_model


def _layer_params(c: ModelConfig) -> int:
    hd = c.dim_per_head
    attn = c.d_model * hd * (2 * c.n_heads + 2 * c.n_kv_heads)
    return attn + 3 * c.d_model * c.d_ff + 2 * c.d_model


def model_shape(config: ModelConfig) -> ModelShape:
    """The shape of a Llama-family model."""
    return ModelShape(config.n_layers, config.n_layers * _layer_params(config), config.vocab_size, config.d_model,
                      config.n_kv_heads, config.n_heads, config.dim_per_head)


def eagle_shape(target: ModelConfig, head_rows: int | None = None) -> ModelShape:
    """An EAGLE-style head on `target`: an input projection [2D -> D], one decoder layer, the target's head (over
    `head_rows` ids with VocabTrim)."""
    rows = target.vocab_size if head_rows is None else check_int("head_rows", head_rows, low=1)
    return ModelShape(1, 2 * target.d_model ** 2 + _layer_params(target), rows, target.d_model, target.n_kv_heads,
                      target.n_heads, target.dim_per_head)


def call_seconds(shape: ModelShape, acc: Accelerator, tokens: int, context: int, batch: int = 1,
                 bytes_per_weight: int = 2, extra_kernels: int = 0, extra_bytes: float = 0.0) -> float:
    """Roofline seconds of one call over `tokens` new tokens per row (see the module docstring)."""
    t, s, b = tokens, context, batch
    flops = 2 * b * t * shape.params + 4 * b * t * s * shape.n_heads * shape.head_dim * shape.layers
    kv = 2 * shape.layers * b * s * shape.n_kv_heads * shape.head_dim * bytes_per_weight
    nbytes = shape.params * bytes_per_weight + kv + 4 * b * t * shape.head_rows + extra_bytes
    kernels = shape.layers * KERNELS_PER_LAYER + KERNELS_PER_CALL + extra_kernels
    return max(nbytes / acc.bandwidth, flops / acc.peak_flops) + kernels * acc.launch


def roofline_profile(target: ModelConfig, drafter: ModelShape | None, accelerator: str | Accelerator, *,
                     contexts=(256, 512, 1024), batches=(1,), tokens=tuple(range(1, 129)),
                     bytes_per_weight: int = 2) -> DeviceProfile:
    """A `DeviceProfile` of the pair on a named accelerator (`ACCELERATORS`) or a given one. Drafter steps and tree
    levels add the warp + sample / top-k over the vocabulary (V' logits read and written per token)."""
    acc = ACCELERATORS.get(accelerator) if isinstance(accelerator, str) else accelerator
    if acc is None:
        raise ValueError(f"unknown accelerator {accelerator!r}; known: {sorted(ACCELERATORS)}")
    tokens = tuple(check_int("tokens", t, low=1) for t in tokens)
    tshape = model_shape(target)
    entries = []
    for b in batches:
        for s in contexts:
            def curve(shape, name, kernels=0, sample=False):
                sec = [call_seconds(shape, acc, t, s, b, bytes_per_weight, kernels,
                                    8.0 * b * t * shape.head_rows if sample else 0.0) for t in tokens]
                return CostCurve(tokens, tuple(sec), name)
            entries.append(ProfileEntry(
                s, b, curve(tshape, "target"),
                None if drafter is None else curve(drafter, "drafter", KERNELS_PER_SAMPLE, True),
                None if drafter is None else curve(drafter, "tree_level", KERNELS_PER_SAMPLE, True)))
    meta = {"accelerator": acc.name, "bandwidth_bytes_per_s": acc.bandwidth, "peak_flops": acc.peak_flops,
            "launch_s": acc.launch, "source": acc.source, "bytes_per_weight": bytes_per_weight,
            "kernels_per_layer": KERNELS_PER_LAYER, "kernels_per_call": KERNELS_PER_CALL,
            "kernels_per_round": KERNELS_PER_ROUND, "target_params": tshape.params,
            "drafter_params": None if drafter is None else drafter.params,
            "formula": "max(bytes/bandwidth, flops/peak) + kernels*launch"}
    return DeviceProfile(f"roofline: {acc.name}", "roofline", tuple(entries),
                         round_overhead=KERNELS_PER_ROUND * acc.launch, run_overhead=0.0, meta=meta)
