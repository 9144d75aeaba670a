"""The `pantau` command line and the embedded single-machine stack."""
