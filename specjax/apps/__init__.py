"""The application layer: the `specjax` command (`cli`), the demo, the bounds report, the model-name parser and
the shared benchmark helpers. It may import `specjax`, `trees` and `transport`; nothing in those packages imports
it (tests/test_layering.py checks the direction of every import)."""
