"""A/B experiments: typed YAML configs, deterministic sticky assignment, and the statistical readout."""
