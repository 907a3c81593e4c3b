"""Prompt table: schema, round trip (local and file://), expansion for the pair builder."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from squeeze3d.errors import UserError
from squeeze3d.prompts import table


def _rows(n=3):
    return [{"prompt_id": table.prompt_id(7, i), "prompt": f"A modern chair number {i}.", "category": "chair",
             "style": "modern", "material": "oak wood", "request_index": i, "seed": 1000 + i,
             "backend": "template", "model": "template-grammar-v1", "mentions_category": True} for i in range(n)]


def test_round_trip_and_metadata(tmp_path):
    loc = table.write_prompt_table(str(tmp_path / "out"), _rows(), {"seed": 7}, {"status": "ok"})
    assert loc.path.endswith("out/prompts.parquet")
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == {"status": "ok"}
    for uri in (str(tmp_path / "out"), loc.uri, f"file://{tmp_path}/out"):
        assert table.read_prompt_table(uri) == _rows()
    assert table.read_table_metadata(str(tmp_path / "out")) == {"schema_version": 1, "seed": 7}
    t = pq.read_table(loc.path)
    assert t.schema.equals(table.SCHEMA) and t.column_names == list(table.COLUMNS)
    assert not list(tmp_path.glob("out/*.tmp-*"))


def test_expand_prompts_for_the_builder():
    rows = _rows(2)
    cond = table.expand_prompts(rows, 4)
    assert cond == [rows[0]["prompt"]] * 4 + [rows[1]["prompt"]] * 4
    assert table.expand_prompt_ids(rows, 2) == [("s7-r000000", 0), ("s7-r000000", 1), ("s7-r000001", 0),
                                                ("s7-r000001", 1)]
    with pytest.raises(UserError, match=">= 1"):
        table.expand_prompts(rows, 0)
    with pytest.raises(UserError, match="empty"):
        table.expand_prompts([], 4)


def test_bad_tables_are_clear_errors(tmp_path):
    with pytest.raises(table.PromptTableError, match="no prompt table here"):
        table.read_prompt_table(str(tmp_path))
    (tmp_path / "prompts.parquet").write_bytes(b"not parquet")
    with pytest.raises(table.PromptTableError, match="not a readable Parquet"):
        table.read_prompt_table(str(tmp_path))
    pq.write_table(pa.table({"prompt": ["x"]}), tmp_path / "prompts.parquet")
    with pytest.raises(table.PromptTableError, match="schema version None"):
        table.read_prompt_table(str(tmp_path))
    with pytest.raises(table.PromptTableError, match="unsupported scheme"):
        table.read_prompt_table("gs://bucket/x")
    with pytest.raises(table.PromptTableError, match=r"row 0: missing \['prompt'\]"):
        table.to_arrow([{**_rows(1)[0], "prompt": None}])
    with pytest.raises(table.PromptTableError, match="missing"):
        table.write_prompt_table(str(tmp_path / "w"), [{**_rows(1)[0], "seed": None}])
    assert not (tmp_path / "w").exists()
