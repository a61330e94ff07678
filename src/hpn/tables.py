"""Tables of named columns written as CSV, or Parquet when the file name ends in ``.parquet``.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
>>> print(write_table({"a": [1, 2], "b": ["x", "y"]}, out).read_text(), end="")
a,b
1,x
2,y
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from hpn.files import atomic_write_bytes, atomic_write_text


def write_table(columns: dict[str, list], out: str | Path) -> Path:
    """Columns of equal length to ``out``, written atomically: Parquet (pyarrow) when ``out``
    ends in ``.parquet``, else CSV with a header row (None as an empty field).

    Raises:
        ValueError: columns of different lengths.
        ImportError: Parquet without pyarrow.
    """
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"table columns differ in length: {lengths}")
    out = Path(out)
    if out.suffix.lower() == ".parquet":
        atomic_write_bytes(out, _parquet_bytes(columns))
        return out
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    atomic_write_text(out, text.getvalue())
    return out


def _parquet_bytes(columns: dict[str, list]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "Parquet output needs pyarrow: pip install pyarrow (or write a .csv file)"
        ) from None
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue().to_pybytes()
