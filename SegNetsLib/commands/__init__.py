"""Sub-commands of the segnets command line, one module each."""
