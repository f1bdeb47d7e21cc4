"""Where the machines of a batch run: a local process pool, or a Dask cluster.

`reseal.pipeline.batch` decides what runs and keeps the state; this package only supplies
executors that run `reseal.pipeline.batch.run_machine` somewhere and hand back its record.
Dask is optional (`pip install reseal[cluster]`): nothing here imports it until a cluster is
asked for.
"""
