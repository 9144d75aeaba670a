"""Code every Pantau service uses: schemas, topic names, config, regions, metrics."""
