# Runs first on every start, before main.py. Deliberately empty of logic: if the application fails,
# the board still reaches the REPL (main.py reports the error), and a board is recovered over USB.
# The filesystem is never written at run time (DESIGN section 4), so there is nothing to set up here.
