"""results stage of the suite."""
