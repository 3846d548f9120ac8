"""Pipeline discovery: the files ``validate``, ``export`` and ``serve`` look at."""

from __future__ import annotations

from pathlib import Path

from batchpilot.discovery import discover_pipeline_files


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_under_a_folder_only_pipelines_and_broken_files_count_sorted(tmp_path: Path):
    b = _write(tmp_path / "pipes" / "b.yaml", "name: b\nnodes: []\n")
    a = _write(tmp_path / "pipes" / "nested" / "a.json", '{"name": "a", "nodes": []}')
    broken = _write(tmp_path / "pipes" / "broken.yml", "name: [unclosed\n")
    _write(tmp_path / "pipes" / "settings.yaml", "retries: 3\n")  # no nodes: not a pipeline
    _write(tmp_path / "pipes" / "list.yaml", "- 1\n- 2\n")
    _write(tmp_path / "pipes" / "notes.txt", "nodes: []\n")
    _write(tmp_path / "pipes" / "job.py", "PIPELINE = None\n")
    assert discover_pipeline_files([tmp_path / "pipes"]) == [b, broken, a]


def test_files_named_explicitly_always_count_even_when_missing(tmp_path: Path):
    settings = _write(tmp_path / "settings.yaml", "retries: 3\n")
    missing = tmp_path / "missing.yaml"
    assert discover_pipeline_files([missing, settings]) == [missing, settings]


def test_python_files_count_when_asked_for_without_being_imported(tmp_path: Path):
    job = _write(tmp_path / "pipes" / "job.py", "raise SystemExit('imported!')\n")
    pipe = _write(tmp_path / "pipes" / "pipe.yaml", "name: p\nnodes: []\n")
    found = discover_pipeline_files([tmp_path / "pipes"], suffixes=(".yaml", ".py"))
    assert found == [job, pipe]


def test_an_empty_folder_has_no_pipelines(tmp_path: Path):
    assert discover_pipeline_files([tmp_path]) == []
