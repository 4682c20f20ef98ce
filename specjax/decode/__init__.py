"""The decode loop (`loop`: prefill, generate) over a named state (`state`), the round contract (`speculator`),
chain rounds (`chain`, `draft`), draft-length policies (`policies`) and DEL-style dynamic exit (`dynamic_exit`)."""
