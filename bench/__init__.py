"""Load benchmark of the audit endpoint against a raw aiokafka producer: `make bench`."""
