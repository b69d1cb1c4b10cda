"""Lines: `Source`s in, one `LinePass` per source out. A single streaming pass flags lines
with the keyword engine, cleans them with the lexer, runs each candidate signature's regex
once (keeping its captures) and assembles the multi-line blocks (tracebacks, launcher
failure blocks)."""
