"""Drafting across vocabularies: a drafter with its own tokenizer drafts for a target (token-level intersection in
the jitted loop); the string-level rules and their exact laws are in `transport.exact.strings`."""
from specjax.crossvocab.runner import CrossVocabRunner, cross_vocab
from specjax.crossvocab.vocab import Overlap, VocabMap, vocab_map

__all__ = ["CrossVocabRunner", "Overlap", "VocabMap", "cross_vocab", "vocab_map"]
