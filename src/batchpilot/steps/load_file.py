"""``load.file``: write the input to a CSV or Parquet file, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import model_validator

from batchpilot.artifacts import iter_batches, read_schema
from batchpilot.errors import StepError
from batchpilot.spec.templating import OutputPath
from batchpilot.steps._database import first_line
from batchpilot.steps.base import Step, StepConfig, StepContext, StepResult

_FORMATS_BY_SUFFIX = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class FileLoadConfig(StepConfig):
    #: must resolve under the pipeline's folder, the home or BATCHPILOT_OUTPUT_ROOTS
    path: Annotated[str, OutputPath()]
    format: Literal["csv", "parquet"] | None = None

    @model_validator(mode="after")
    def _format_known(self) -> FileLoadConfig:
        if self.format is None and Path(self.path).suffix.lower() not in _FORMATS_BY_SUFFIX:
            raise ValueError(
                f"cannot tell the format of {self.path!r} from its suffix; "
                "set format: csv or format: parquet"
            )
        return self

    @property
    def file_format(self) -> str:
        """``csv`` or ``parquet``: the one given, or the one the suffix implies."""
        return self.format or _FORMATS_BY_SUFFIX[Path(self.path).suffix.lower()]


class FileLoad(Step[FileLoadConfig]):
    """Streams the input into ``path`` (CSV with a header, or Parquet), creating parent
    folders. The file is written beside the target and renamed into place when complete,
    so readers never see a half-written file. Raises :class:`StepError` naming the path."""

    type_name = "load.file"
    Config = FileLoadConfig

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        source = ctx.single_input()
        target = Path(config.path)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        rows = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            schema = read_schema(source)
            with _writer(config.file_format, partial, schema) as write:
                for batch in iter_batches(source):
                    ctx.check_cancelled()
                    write(batch)
                    rows += batch.num_rows
                    ctx.report_rows(rows)
            os.replace(partial, target)
        except (OSError, pa.ArrowException) as exc:
            raise StepError(f"cannot write {target}: {first_line(str(exc))}") from exc
        finally:
            partial.unlink(missing_ok=True)
        ctx.log.info("wrote %d rows to %s", rows, target)
        return StepResult(
            rows_in=source.rows,
            rows_out=rows,
            metadata={"path": str(target), "format": config.file_format, "rows": rows},
        )


class _writer:
    """A context manager yielding ``write(batch)`` for the chosen format."""

    def __init__(self, file_format: str, path: Path, schema: pa.Schema) -> None:
        if file_format == "csv":
            self._writer: pacsv.CSVWriter | pq.ParquetWriter = pacsv.CSVWriter(str(path), schema)
        else:
            self._writer = pq.ParquetWriter(str(path), schema)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self._writer.write_batch

    def __exit__(self, *exc_info: object) -> None:
        self._writer.close()


STEPS = (FileLoad,)
