"""Model import/export: GGUF and Hugging Face safetensors loaders, tokenizers, offline prompt sets, orbax
checkpoints and the embedded SmolLM2-135M default target."""
