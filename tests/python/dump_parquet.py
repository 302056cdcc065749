"""Independent reader for the cold tier: reads parquet files with pyarrow and prints, as JSON
lines, first one object describing each file's layout, then every row.

usage: dump_parquet.py FILE...
"""
import datetime
import json
import sys

import pyarrow.parquet as pq


def plain(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def main(paths):
    for path in paths:
        parquet_file = pq.ParquetFile(path)
        metadata = parquet_file.metadata
        chunks = [
            metadata.row_group(group).column(column)
            for group in range(metadata.num_row_groups)
            for column in range(metadata.num_columns)
        ]
        print(json.dumps({
            "file": path,
            "rows": metadata.num_rows,
            "row_groups": metadata.num_row_groups,
            "compression": sorted({chunk.compression for chunk in chunks}),
            "all_have_offset_index": all(chunk.has_offset_index for chunk in chunks),
            "all_have_column_index": all(chunk.has_column_index for chunk in chunks),
            "all_have_statistics": all(chunk.is_stats_set for chunk in chunks),
            "columns": parquet_file.schema_arrow.names,
        }))
        table = parquet_file.read()
        for row in table.to_pylist():
            print(json.dumps({name: plain(value) for name, value in row.items()}))


if __name__ == "__main__":
    main(sys.argv[1:])
