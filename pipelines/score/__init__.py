"""Batch scoring: a Parquet or CSV file in, the registered champion's answers out, on Ray Data.

`python -m pipelines.score --model churn --input rows.parquet --output scored.parquet` (`make score`):
  - every row is checked as the server checks a request, through the model's codec (`modelpkg.codecs`:
    stored row -> request record -> validation -> decoding), never a copy of its rules;
  - rows that pass are scored by the ONNX champion in onnxruntime, inside Ray Data `map_batches` on an actor
    pool: one session per actor, opened once;
  - the answers stream to one Parquet file (the input's columns, the prediction columns monitoring's
    reference uses, and model name, version and run id on every row); rows that fail go to a rejects file
    with the column and the problem, so nothing is dropped and no bad row stops the job.
Modules: `rows` (one batch: check and score; no Ray), `files` (reading inputs, writing the two outputs),
`job` (the Ray Data pipeline and its summary), `__main__` (the CLI).
"""
