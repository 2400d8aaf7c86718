"""A run folder's ``.hydra/overrides.yaml`` is data (issue 27, item 1): ``resume=RUN_DIR``
puts a stored override on the command line only when it sets one of the run's own
settings (chosen: refuse, rather than rebuild the run from its checkpoint's config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sat.cli.continue_run import expand_resume
from sat.errors import UserError

REFUSED = [
    ("+hydra.callbacks.x._target_=builtins.open", "a setting of Hydra itself"),  # truncated an outside file
    ("hydra.output_subdir=/elsewhere", "a setting of Hydra itself"),  # Hydra's record outside the folder
    ("hydra/launcher=joblib", "a setting of Hydra itself"),
    ("method@hydra.callbacks.x=sat", "a setting of Hydra itself"),
    ("_target_=os.system", "a Hydra key (_target_)"),
    ("method._target_=os.system", "a Hydra key (_target_)"),
    ("method.natural={_target_:builtins.open,file:/x,mode:w}", "a Hydra key (_target_)"),
    ("+method.x=[1,{_args_:[2]}]", "a Hydra key (_args_)"),
    ("name=${oc.env:SECRET}", "a resolver call"),
    ("seed=range(0,100000000)", "a sweep"),
    ("method=ce,sat", "a sweep"),
    ("paths.output_dir=/elsewhere", "the folder a run writes"),
    ("+foo.bar=1", "not a setting of train.py"),
    ("trainer.epoch=3", "not a setting of train.py"),
    ("experiment=../../../tmp/x", "not an option of conf/experiment/"),
    ("trainer.epochs=[1", "not an override Hydra can parse"),
]
KEPT = ["method=sat", "noise.rate=0.4", "seed=3", "~logger", "experiment=quickstart", "+trainer.deterministic=true",
        "method.alpha=0.95", "paths.data_dir=/data", "name=${seed}", "dataset.root=/data/cifar"]


def _folder(tmp_path: Path, text: str) -> Path:
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / ".hydra" / "overrides.yaml").write_text(text)
    return tmp_path / "run"


@pytest.mark.parametrize("override,why", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_stored_override_that_is_not_a_runs_setting_is_refused(tmp_path, override, why):
    run = _folder(tmp_path, f"- {override!r}\n")
    with pytest.raises(UserError, match="which a continuation never takes from a run folder") as refused:
        expand_resume([f"resume={run}"])
    assert why in str(refused.value) and "\n" not in str(refused.value)


def test_a_runs_own_settings_are_continued(tmp_path):
    run = _folder(tmp_path, "".join(f"- {o!r}\n" for o in KEPT))
    assert expand_resume([f"resume={run}", "trainer.num_threads=1"]) == \
        [*KEPT, f"resume={run}", "trainer.num_threads=1", f"hydra.run.dir={run}"]


def test_a_billion_laughs_overrides_file_is_refused_without_expanding_it(tmp_path):
    """Nine levels of ten aliases: 10**9 strings if anything turned the entries into text."""
    levels = ["- &l0 [x, x, x, x, x, x, x, x, x, x]\n"]
    levels += [f"- &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10)]
    run = _folder(tmp_path, "".join(levels))
    with pytest.raises(UserError, match=r"uses YAML aliases \(\*name\), which Hydra never writes"):
        expand_resume([f"resume={run}"])


def test_an_oversized_overrides_file_is_refused(tmp_path):
    run = _folder(tmp_path, "- seed=1\n" * 200_000)
    with pytest.raises(UserError, match="bytes, not a run's overrides"):
        expand_resume([f"resume={run}"])
