"""transfer stage of the suite."""
