"""pretrain stage of the suite."""
