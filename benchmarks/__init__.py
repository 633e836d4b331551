"""rankbench benchmark driver, metrics and reporting."""
