"""The model: its configuration and families, the one decoder (`flax.nnx`), the slot-addressed KV cache, the block
(what one forward writes and what each query sees), the layout on a mesh, and loaders (`io`)."""
