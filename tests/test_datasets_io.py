"""Inputs read through Hugging Face `datasets` (JSON files, save_to_disk and dataset directories, hub ids) and the
labeled Parquet loaded back with `datasets`: real files made in tmp_path, no mocks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pandas as pd
import pytest

from weibolabel.data.datasets import input_identity, input_sha256
from weibolabel.data.labeled import load_labeled
from weibolabel.data.labels import load_label_schema
from weibolabel.data.tables import read_table
from weibolabel.labeling.corpus import Corpus, resolve_inputs
from weibolabel.labeling.parts import PartStore, output_schema
from weibolabel.util.errors import UserError

from helpers import REPO
from helpers.data import make_labeled_rows
from helpers.jobs import TINY_TRAIN_ARGS, launch_job

SCHEMA = load_label_schema(None)  # production, heritage, culture, irrelevant


def write_jsonl(path: Path, records: list[dict], blank_lines: bool = False) -> Path:
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    path.write_text(("\n\n" if blank_lines else "\n").join(lines) + "\n", encoding="utf-8")
    return path


def chunk_rows(corpus: Corpus, chunk_size: int, wanted=None) -> dict[int, list]:
    return {c.index: c.rows.to_dict("list") for c in corpus.iter_chunks(chunk_size, wanted=wanted)}


# ------------------------------------------------------------------------------------------------ JSON files
def test_jsonl_labeled_data_is_validated_like_a_spreadsheet(tmp_path):
    # A scraper's JSON Lines: labels as ids, names and floats in one column (datasets reads such a column as JSON).
    records = [{"Sentence": "故宫好美", "Label": 1}, {"Sentence": "转发微博", "Label": "irrelevant"}]
    records += [{"Sentence": "主持人讲得好", "Label": 0.0}, {"Sentence": "文化自信", "Label": 2}]
    data = load_labeled(write_jsonl(tmp_path / "labeled.jsonl", records), SCHEMA)
    assert data.rows["label"].tolist() == [1, 3, 0, 2]
    assert data.rows["text"].tolist() == ["故宫好美", "转发微博", "主持人讲得好", "文化自信"]
    assert data.rows["row_id"].tolist() == [0, 1, 2, 3]
    assert data.rows["row"].tolist() == ["record 1", "record 2", "record 3", "record 4"]

    records[2]["Label"] = 7
    with pytest.raises(UserError) as error:
        load_labeled(write_jsonl(tmp_path / "bad_label.jsonl", records), SCHEMA)
    assert "bad_label.jsonl, record 3, column 'Label': 7 is outside the label schema" in str(error.value)


def test_json_array_file_and_other_column_names(tmp_path):
    path = tmp_path / "labeled.json"
    path.write_text(json.dumps([{"text": "越王勾践剑", "y": "heritage"}, {"text": "早上好", "y": 3}]), encoding="utf-8")
    data = load_labeled(path, SCHEMA, text_column="text", label_column="y")
    assert data.rows["label"].tolist() == [1, 3]
    with pytest.raises(UserError, match=r"no column 'Sentence'.*Pass --text_column"):
        load_labeled(path, SCHEMA)


def test_malformed_json_line_is_named_by_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"Sentence": "a", "Label": 1}\n\n{"Sentence": "b", Label: 2}\n{"Sentence": "c", "Label": 3}\n')
    expected = f"{bad}, line 3: not valid JSON"
    with pytest.raises(UserError, match=expected):
        load_labeled(bad, SCHEMA)
    with pytest.raises(UserError, match=expected):  # labeling: the corpus is read through once before any model work
        Corpus(resolve_inputs(str(bad)), "Sentence", [], "Label")

    not_object = tmp_path / "list.jsonl"
    not_object.write_text('{"Sentence": "a"}\n["b", 2]\n')
    with pytest.raises(UserError, match=r"list.jsonl, line 2: a JSON list, not an object"):
        read_table(not_object)


def test_blank_lines_with_mixed_types_say_what_to_change(tmp_path):
    # Each line is valid JSON; datasets reads such a file only without its blank lines or with one type per column.
    path = tmp_path / "scraped.jsonl"
    write_jsonl(path, [{"Sentence": "甲", "Label": 1}, {"Sentence": "乙", "Label": "culture"}], blank_lines=True)
    try:
        assert read_table(path)["Label"].tolist() == [1, "culture"]  # a datasets version that reads it
    except UserError as error:
        assert f"{path}: datasets cannot read this JSON Lines file: it has blank lines (line 2 is the first)" in str(
            error
        )
        assert "'Label' (int and str)" in str(error)


def test_gbk_json_is_decoded(tmp_path):
    path = tmp_path / "gbk.jsonl"
    texts = ["国家宝藏真好看", "越王勾践剑好锋利", "主持人讲得真好", "千里江山图太美了"] * 5
    path.write_bytes("".join(f'{{"Sentence": "{t}", "Label": 0}}\n' for t in texts).encode("gb18030"))
    assert read_table(path)["Sentence"].tolist() == texts
    # One line is also valid Big5 (every Big5 byte pair is valid GB18030): not guessed, said how to choose.
    path.write_bytes('{"Sentence": "国家宝藏真好看", "Label": 0}\n'.encode("gb18030"))
    with pytest.raises(UserError, match="Pass the one that reads right: --encoding gb18030 or --encoding big5"):
        read_table(path)
    assert read_table(path, encoding="gb18030")["Sentence"].tolist() == ["国家宝藏真好看"]


def test_a_chinese_legacy_encoding_leaves_the_utf8_files_of_a_directory_as_they_are(tmp_path):
    # A short GBK file is ambiguous, and the advice is --encoding gb18030: it must not garble the directory's UTF-8
    # files, which GB18030 would decode without an error ('评论0' -> '璇勮0').
    (tmp_path / "a_gbk.csv").write_bytes("Sentence\n国家宝藏真好看\n".encode("gb18030"))
    (tmp_path / "b_utf8.csv").write_text("Sentence\n越王勾践剑\n", encoding="utf-8")
    (tmp_path / "c_utf8.jsonl").write_text('{"Sentence": "评论0"}\n', encoding="utf-8")
    files = sorted(tmp_path.glob("*"))
    with pytest.raises(UserError, match="--encoding gb18030 or --encoding big5"):
        Corpus(files, "Sentence", [], None)
    corpus = Corpus(files, "Sentence", [], None, encoding="gb18030")
    texts = [text for chunk in corpus.iter_chunks(10) for text in chunk.rows["text"]]
    assert texts == ["国家宝藏真好看", "越王勾践剑", "评论0"]
    # Another encoding given is the user's to choose, and is used as given.
    assert read_table(tmp_path / "b_utf8.csv", encoding="latin-1")["Sentence"].tolist() == [
        "è¶\x8aç\x8e\x8bå\x8b¾è·µå\x89\x91"
    ]


# ------------------------------------------------------------------------------------------------ datasets
def test_saved_dataset_class_labels_map_to_the_schema_by_name(tmp_path):
    # The dataset's ClassLabel orders the classes its own way: ids are translated through the names, not copied.
    features = datasets.Features(
        {"Sentence": datasets.Value("string"), "Label": datasets.ClassLabel(names=list(reversed(SCHEMA.names)))}
    )
    saved = datasets.Dataset.from_dict(
        {"Sentence": ["兵马俑", "抽奖", "导演拍得好"], "Label": [2, 0, 3]}, features=features
    )
    saved.save_to_disk(str(tmp_path / "saved"))
    data = load_labeled(tmp_path / "saved", SCHEMA)
    assert [SCHEMA.names[label] for label in data.rows["label"]] == ["heritage", "irrelevant", "production"]
    assert data.rows["row"].tolist() == ["row index 0", "row index 1", "row index 2"]

    splits = datasets.DatasetDict({"train": saved, "annotated": saved.select([1])})
    splits.save_to_disk(str(tmp_path / "splits"))
    assert read_table(tmp_path / "splits", split="annotated")["Sentence"].tolist() == ["抽奖"]
    with pytest.raises(UserError, match=r"has the splits \['train', 'annotated'\], not 'dev': pass one with --split"):
        read_table(tmp_path / "splits", split="dev")


def test_local_dataset_directory_of_data_files(tmp_path):
    # The layout `datasets.load_dataset(directory)` resolves: data files in a subfolder, split by file name.
    directory = tmp_path / "weibo_ds"
    (directory / "data").mkdir(parents=True)
    write_jsonl(directory / "data" / "train.jsonl", make_labeled_rows(8).to_dict("records"))
    write_jsonl(directory / "data" / "test.jsonl", make_labeled_rows(3, seed=1).to_dict("records"))
    assert resolve_inputs(str(directory)) == [directory]
    assert len(read_table(directory)) == 8
    assert read_table(directory, split="test")["Sentence"].tolist() == make_labeled_rows(3, seed=1)["Sentence"].tolist()
    corpus = Corpus([directory], "Sentence", [], "Label", split="test")
    assert corpus.row_counts == [3]
    assert corpus.gold_column == "Label"

    # A dataset card that configures it makes a directory of top-level files a dataset too.
    carded = tmp_path / "carded"
    carded.mkdir()
    write_jsonl(carded / "comments.jsonl", make_labeled_rows(4).to_dict("records"))
    (carded / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: comments.jsonl\n---\n"
    )
    assert resolve_inputs(str(carded)) == [carded]
    assert len(read_table(carded)) == 4

    # A loading script (named after its directory) is refused with datasets' reason; a scraper beside CSVs is not one.
    scripted = tmp_path / "scripted"
    scripted.mkdir()
    (scripted / "scripted.py").write_text("import datasets\n")
    with pytest.raises(UserError, match=r"Could not read .*scripted with datasets: .*scripts are no longer supported"):
        read_table(scripted)
    (carded / "scrape.py").write_text("print('scraping')\n")
    (carded / "README.md").unlink()
    assert resolve_inputs(str(carded)) == [carded / "comments.jsonl"]


def test_directory_of_json_files_is_a_list_of_inputs_with_global_row_ids(tmp_path):
    directory = tmp_path / "corpus"
    directory.mkdir()
    write_jsonl(directory / "a.jsonl", [{"Sentence": f"甲{i}"} for i in range(5)], blank_lines=True)
    pd.DataFrame({"Sentence": [f"乙{i}" for i in range(4)]}).to_csv(directory / "b.csv", index=False)
    files = resolve_inputs(str(directory))
    assert files == [directory / "a.jsonl", directory / "b.csv"]
    corpus = Corpus(files, "Sentence", [], "Label")
    assert corpus.row_counts == [5, 4]
    everything = pd.concat([c.rows for c in corpus.iter_chunks(2)], ignore_index=True)
    assert everything["row_id"].tolist() == list(range(9))
    assert everything["source_row"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    assert everything["text"].tolist() == [f"甲{i}" for i in range(5)] + [f"乙{i}" for i in range(4)]
    assert set(everything["source_file"]) == {str(directory / "a.jsonl"), str(directory / "b.csv")}


@pytest.mark.parametrize("kind", ["jsonl", "saved"])
def test_each_process_gets_exactly_its_own_chunks(kind, tmp_path):
    rows = make_labeled_rows(23)
    if kind == "jsonl":
        path = write_jsonl(tmp_path / "corpus.jsonl", rows.to_dict("records"))
    else:
        path = tmp_path / "saved"
        datasets.Dataset.from_pandas(rows).save_to_disk(str(path))
    everything = chunk_rows(Corpus([path], "Sentence", [], "Label"), 5)
    assert sorted(everything) == [0, 1, 2, 3, 4]
    assert [t for c in sorted(everything) for t in everything[c]["text"]] == rows["Sentence"].tolist()
    for rank in range(2):
        mine = chunk_rows(Corpus([path], "Sentence", [], "Label"), 5, wanted=lambda c, rank=rank: c % 2 == rank)
        assert mine == {c: everything[c] for c in everything if c % 2 == rank}


def test_identity_changes_with_the_dataset(tmp_path):
    path = tmp_path / "saved"
    datasets.Dataset.from_dict({"Sentence": ["一", "二"]}).save_to_disk(str(path))
    before_identity, before_hash = input_identity(path), input_sha256(path)
    datasets.Dataset.from_dict({"Sentence": ["一", "三"]}).save_to_disk(str(path))
    assert input_sha256(path) != before_hash
    assert input_identity(path) != before_identity


def test_hub_id_not_in_the_cache_fails_at_once_offline(tmp_path, monkeypatch):
    args = ["--input", "weibolabel-tests/no-such-dataset", "--model", str(tmp_path / "model")]
    args += ["--output", str(tmp_path / "labels.parquet")]
    cache = {"HF_DATASETS_CACHE": str(tmp_path / "cache")}
    result = launch_job("label_corpus.py", args, timeout=120, check=False, env=cache)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "'weibolabel-tests/no-such-dataset' is not a local file or directory" in result.stderr
    assert "not in the datasets cache" in result.stderr
    assert "save_to_disk('data/no-such-dataset')" in result.stderr
    assert "hf download weibolabel-tests/no-such-dataset --repo-type dataset" in result.stderr
    # In-process, the lookup itself (interpreter start and imports aside) takes no network retries.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(UserError, match="not in the datasets cache"):
        read_table("weibolabel-tests/no-such-dataset")
    assert time.monotonic() - started < 5
    assert not (tmp_path / "labels.parquet").exists()


def test_hub_lookup_offline_imports_no_torch(tmp_path):
    """Asking whether the hub is reachable is a socket, not a model library: no torch or transformers import."""
    code = (
        "import sys; from weibolabel.util.errors import UserError; from weibolabel.data.tables import read_table\n"
        "try: read_table('weibolabel-tests/no-such-dataset')\n"
        "except UserError: pass\n"
        "else: raise SystemExit('no error')\n"
        "assert not {'torch', 'transformers'} & set(sys.modules), 'a model library was imported'"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120, env=env)


def test_plain_inputs_do_not_import_datasets(tmp_path):
    path = tmp_path / "comments.csv"
    make_labeled_rows(4).to_csv(path, index=False)
    code = (
        "import sys; from weibolabel.labeling.corpus import Corpus, resolve_inputs; "
        "from weibolabel.data.labeled import load_labeled; "
        "from weibolabel.data.labels import load_label_schema; import weibolabel.labeling.parts; "
        f"load_labeled({str(path)!r}, load_label_schema(None)); "
        f"list(Corpus(resolve_inputs({str(path)!r}), 'Sentence', [], 'Label').iter_chunks(2)); "
        "assert 'datasets' not in sys.modules, 'datasets was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


# ------------------------------------------------------------------------------------------------ output
def test_labeled_parquet_loads_with_datasets_class_labels(tmp_path):
    output = tmp_path / "labels.parquet"
    store = PartStore(output, output_schema(False, {}, True))
    store.prepare({"test": True}, overwrite=False)
    part = pd.DataFrame(
        {
            "row_id": [0, 1, 2],
            "text": ["故宫", None, "早上好"],
            "label": pd.array([1, None, 3], dtype="Int64"),
            "label_name": ["heritage", None, "irrelevant"],
            "confidence": pd.array([0.9, None, 0.6], dtype="float32"),
            "probs": [[0.05, 0.9, 0.05, 0.0], None, [0.1, 0.1, 0.2, 0.6]],
            "status": ["ok", "empty", "ok"],
            "truncated": [False, False, False],
            "gold_label": pd.array([1, 0, None], dtype="Int64"),
        }
    )
    store.write(0, part, {})
    store.merge(1, 3, {"labels": SCHEMA.to_list()})
    loaded = datasets.load_dataset("parquet", data_files=str(output), split="train", cache_dir=str(tmp_path / "c"))
    assert loaded.features["label"] == datasets.ClassLabel(names=SCHEMA.names)
    assert loaded.features["gold_label"] == datasets.ClassLabel(names=SCHEMA.names)
    assert loaded.features["probs"].feature == datasets.Value("float32")
    assert loaded["label"] == [1, None, 3]
    assert loaded.features["label"].int2str(loaded[2]["label"]) == "irrelevant"
    # pandas still reads it as before
    assert pd.read_parquet(output, dtype_backend="numpy_nullable")["label"].tolist()[::2] == [1, 3]


# ------------------------------------------------------------------------------------------------ the jobs
def test_jobs_train_on_a_saved_split_and_label_jsonl(tiny_base_model_dir, tmp_path):
    rows = make_labeled_rows(96)
    features = datasets.Features(
        {"Sentence": datasets.Value("string"), "Label": datasets.ClassLabel(names=SCHEMA.names)}
    )
    splits = datasets.DatasetDict(
        {
            "labeled": datasets.Dataset.from_pandas(rows, features=features),
            "train": datasets.Dataset.from_dict({"Sentence": ["不该读这个"], "Label": [0]}, features=features),
        }
    )
    splits.save_to_disk(str(tmp_path / "weibo"))
    run = tmp_path / "run"
    args = ["--data", str(tmp_path / "weibo"), "--split", "labeled", "--model_name_or_path", str(tiny_base_model_dir)]
    tiny = [*TINY_TRAIN_ARGS, "--num_folds", "2", "--num_epochs", "1", "--no_baseline"]
    launch_job("train.py", [*args, "--output_dir", str(run), *tiny])
    folds = pd.read_csv(run / "folds.csv")
    assert len(folds) == 96 and folds["row"].tolist()[:2] == ["row index 0", "row index 1"]
    assert (run / "fold_1" / "fold_result.json").is_file()

    corpus = write_jsonl(tmp_path / "corpus.jsonl", make_labeled_rows(10, seed=3).to_dict("records"))
    output = tmp_path / "labels.parquet"
    launch_job("label_corpus.py", ["--input", str(corpus), "--model", str(run), "--output", str(output)])
    labels = pd.read_parquet(output, dtype_backend="numpy_nullable")
    assert labels["row_id"].tolist() == list(range(10))
    assert labels["text"].tolist() == make_labeled_rows(10, seed=3)["Sentence"].tolist()
    assert labels["gold_label"].tolist() == make_labeled_rows(10, seed=3)["Label"].tolist()
    loaded = datasets.load_dataset("parquet", data_files=str(output), split="train", cache_dir=str(tmp_path / "c"))
    assert loaded.features["label"].names == SCHEMA.names
    assert loaded["label"] == labels["label"].tolist()


# ------------------------------------------------------------------------------------------------ declared floors
def test_floors_script_pins_every_dependency_at_its_floor():
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "test_floors.sh"), "--constraints"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    pins = result.stdout.split()
    expected = [requirement.replace(">=", "==").split()[0] for requirement in declared]  # torch too: its floor
    assert pins == expected
    assert "datasets==4.8.4" in pins
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", str(REPO / "scripts" / "test_floors.sh")], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    assert "bash scripts/test_floors.sh" in (REPO / ".ci" / "run").read_text()


def test_floors_script_without_the_floor_python_says_how_to_get_it(tmp_path):
    """requires-python's floor is the Python the floors are tested on; a wrong one stops before any venv is made."""
    environment = {**os.environ, "FLOORS_PYTHON": sys.executable, "FLOORS_VENV": str(tmp_path / "venv")}
    if sys.version_info[:2] == (3, 10):
        environment["FLOORS_PYTHON"] = str(tmp_path / "no-such-python")
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "test_floors.sh")], capture_output=True, text=True, env=environment, timeout=60
    )
    assert result.returncode == 1
    assert "requires-python says >=3.10, so the floors are tested on Python 3.10" in result.stderr
    assert "pyenv install 3.10" in result.stderr and "FLOORS_PYTHON=/path/to/python3.10" in result.stderr
    assert not (tmp_path / "venv").exists()
