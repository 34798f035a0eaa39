"""`RunFolder`'s paths and readers: one rule for a torn log line, one-line errors naming file and line, the recorded
similarity, whether a run is finished, and where ``fairadv eval`` writes. No training: the files are written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairadv.errors import FairadvError
from fairadv.files import read_records
from fairadv.run_folder import RunFolder, eval_file_for, run_of_checkpoint


def write_lines(path: Path, *lines: str, newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if newline else ""))
    return path


def test_a_torn_final_line_is_skipped(tmp_path):
    path = write_lines(tmp_path / "metrics.jsonl", '{"epoch": 1}', '{"epoch": 2}', '{"epoch": 3, "lo', newline=False)
    assert read_records(path) == [{"epoch": 1}, {"epoch": 2}]


def test_a_bad_line_before_the_last_is_one_line_naming_file_and_line(tmp_path):
    path = write_lines(tmp_path / "policy.jsonl", '{"epoch": 0}', "garbage", '{"epoch": 1}')
    with pytest.raises(FairadvError, match=r"policy.jsonl: line 2 is not JSON") as info:
        read_records(path)
    assert "\n" not in str(info.value)
    write_lines(path, '{"epoch": 0}', "[1, 2]", '{"epoch": 1}')
    with pytest.raises(FairadvError, match=r"line 2: expected a JSON object, got list"):
        read_records(path)


def test_missing_logs_read_as_empty_and_blank_lines_are_ignored(tmp_path):
    assert read_records(tmp_path / "metrics.jsonl") == []
    path = write_lines(tmp_path / "metrics.jsonl", '{"epoch": 1}', "", '{"epoch": 2}')
    assert [r["epoch"] for r in read_records(path)] == [1, 2]


def test_truncating_on_resume_follows_the_same_rule(tmp_path):
    folder = RunFolder(tmp_path)
    write_lines(folder.metrics_file, '{"epoch": 1}', '{"epoch": 2}', '{"epoch": 3}', '{"ep', newline=False)
    write_lines(folder.policy_file, '{"epoch": 0}', '{"epoch": 2}')
    folder.truncate_logs(keep_through=1)
    assert folder.metrics() == [{"epoch": 1}]
    assert folder.policies() == [{"epoch": 0}]


def test_the_recorded_similarity_is_the_last_policy_record_that_has_one(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.recorded_similarity() is None
    write_lines(folder.policy_file, json.dumps({"epoch": 0}), json.dumps({"epoch": 3, "similarity": [[1.0]]}),
                json.dumps({"epoch": 5, "similarity": [[0.5]]}), json.dumps({"epoch": 6}))
    assert folder.recorded_similarity()["epoch"] == 5


def test_summary_eval_and_recipe_readers(tmp_path):
    folder = RunFolder(tmp_path)
    assert not folder.finished and not folder.started and folder.evaluation() is None
    with pytest.raises(FairadvError, match="summary.json: not found .the run has not finished"):
        folder.summary()
    with pytest.raises(FairadvError, match="recipe.toml: not found; not a run folder"):
        folder.recipe()
    folder.recipe_file.write_text('[run]\nname = "x"\n')
    folder.write_summary({"robust_accuracy": 0.5})
    folder.eval_file.write_text("[]")
    assert folder.started and folder.finished
    assert folder.recipe() == {"run": {"name": "x"}} and folder.summary() == {"robust_accuracy": 0.5}
    with pytest.raises(FairadvError, match="eval.json: expected a JSON object"):
        folder.evaluation()


def test_checkpoints_and_where_eval_writes(tmp_path):
    folder = RunFolder(tmp_path / "run")
    with pytest.raises(FairadvError, match=r"not a run folder \(no checkpoints/last.pt\)"):
        folder.existing_checkpoint()
    folder.create("")
    folder.save_checkpoint({"epoch": 1})
    assert folder.existing_checkpoint() == folder.checkpoint == tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(FairadvError, match="best.pt: not found; a run keeps best.pt only with a validation split"):
        folder.existing_checkpoint("best")
    assert run_of_checkpoint(folder.checkpoint).path == folder.path
    assert eval_file_for(folder.checkpoint) == folder.eval_file
    loose = tmp_path / "published.pt"
    assert run_of_checkpoint(loose) is None and eval_file_for(loose) == tmp_path / "published.eval.json"


def test_trackers_file_round_trips_and_a_damaged_one_is_one_line(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.trackers() == {}
    folder.write_trackers({"tensorboard": {"logged_through": 2}})
    assert folder.trackers() == {"tensorboard": {"logged_through": 2}}
    folder.trackers_file.write_text("{")
    with pytest.raises(FairadvError, match="trackers.json: not a trackers file"):
        folder.trackers()
