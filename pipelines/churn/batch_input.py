"""N synthetic churn customers as a batch-scoring input: Parquet, typed as the pipeline types them.

Customers come from the synthetic generator (pipelines/churn/synthetic.py) and are typed by the training
validator (pipelines/churn/data.py), in chunks written one after another, so ten million rows take the
memory of one chunk. The label column is dropped: a scoring input has none. `bad_share` of the rows get a
tenure below zero, which the model's contract refuses, to exercise the rejects path at scale.

    python -m pipelines.churn.batch_input --rows 1000000 --out data/generated/churn-1m.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.churn import schema
from pipelines.churn.data import validate_customers
from pipelines.churn.synthetic import generate_customers

CHUNK_ROWS = 200_000  # customers generated, typed and written at a time (also the Parquet row group)
BAD_TENURE = -1  # below the contract's minimum of 0 months


def customers_chunk(rows: int, seed: int, bad_share: float) -> pa.Table:
    typed, _notes = validate_customers(generate_customers(rows, seed=seed))
    frame = typed.drop(columns=[schema.LABEL_COLUMN]).reset_index(drop=True)
    if bad_share > 0:
        bad = np.random.default_rng(seed).random(rows) < bad_share
        frame.loc[bad, "tenure"] = BAD_TENURE
    return pa.Table.from_pandas(frame, preserve_index=False)


def write_customers(path: str | Path, rows: int, *, seed: int = 0, bad_share: float = 0.0,
                    chunk_rows: int = CHUNK_ROWS) -> Path:
    """Write `rows` synthetic customers to `path` (Parquet); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for number, start in enumerate(range(0, rows, chunk_rows)):
            table = customers_chunk(min(chunk_rows, rows - start), seed + number, bad_share)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=chunk_rows)
    finally:
        if writer is not None:
            writer.close()
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bad-share", type=float, default=0.0, help="share of rows made invalid (tenure < 0)")
    args = parser.parse_args(argv)
    print(write_customers(args.out, args.rows, seed=args.seed, bad_share=args.bad_share))


if __name__ == "__main__":
    main()
