"""Config runs: load -> build graphs -> fit -> evaluate -> export a run directory."""
