"""Grammar constraints carried through the decode loop: token automata from regexes and JSON schemas
(`compile`), the runner that constrains any model's laws along every draft's path (`runner`), and the h of the Doob
transform that makes a constrained run faithful to the grammar-conditional law (`validity`)."""
from specjax.constrain.automaton import TokenAutomaton, from_transitions, pad_automaton
from specjax.constrain.compile import compile_regex, regex_from_json_schema, token_bytes
from specjax.constrain.runner import ConstrainedRunner, constrain

__all__ = ["TokenAutomaton", "from_transitions", "pad_automaton", "compile_regex", "regex_from_json_schema", "token_bytes",
           "ConstrainedRunner", "constrain"]
