"""The config as a schema (issue 18 item 3, issue 21 "typos are refused"): a wrong type,
an unknown key (with or without ``+``) or an unknown option is one line naming it and
the closest valid ones; library messages get the config path of the node they were
built from; the trust registry comes from the class definitions; sweep jobs name
themselves in their log lines. In-process through ``sat.train``/``sat.evaluate`` (which
raise UserError) wherever the exit status is not the point."""

from __future__ import annotations

import logging

import pytest
from conftest import TINY
from omegaconf import OmegaConf

import sat
from sat.config import validate
from sat.config.schema import TrainerSettings
from sat.errors import UserError


def refused(entry, overrides, tmp_path) -> str:
    """The UserError message of ``sat.<entry>(overrides)``, which must leave no output folder."""
    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        getattr(sat, entry)(overrides, output_dir=out)
    assert "\n" not in str(e.value)
    return str(e.value)


# --- refused while composing: no output folder is made ------------------------------------------

COMPOSITION = [
    ("train", "trainer.epochs=abc", ["trainer.epochs='abc' is not an integer"]),
    ("train", "trainer.compile=maybe", ["trainer.compile='maybe' is not a boolean"]),
    ("train", "seed=1.5", ["seed=1.5 is not an integer"]),
    ("train", "trainer.num_threads=two", ["trainer.num_threads='two' is not an integer"]),
    ("train", "trainer.epoch=3", ["trainer.epoch is not a key of trainer", "did you mean trainer.epochs?"]),
    ("train", "method.alfa=1", ["method.alfa is not a key of method", "did you mean method.alpha?"]),
    ("train", "experiment=quickstrat", ["experiment=quickstrat is not an option", "did you mean experiment=quickstart?",
                                        "conf/experiment/"]),
    ("train", "method=nosuch", ["method=nosuch is not an option", "conf/method/", "sat_sce"]),
    ("train", ["trainer.epochs='abc"], ["cannot parse the override", "trainer.epochs='abc"]),  # unbalanced quote
    ("train", "trainer.epochs='abc", ["cannot be split into settings", "No closing quotation"]),
    ("evaluate", "checkpoint=x.pt batch_size=8", ["batch_size is not a key of the config",
                                                  "trainer.eval_batch_size"]),  # the key training has
    ("evaluate", "checkpoint=x.pt precision=bf16", ["precision is not a key", "trainer.precision"]),
    ("evaluate", "checkpoint=x.pt trainer.eval_batch_size=abc", ["trainer.eval_batch_size='abc' is not an integer"]),
    ("attack", "checkpoint=x.pt batch_size=8", ["batch_size is not a key", "trainer.eval_batch_size"]),
    # attack's own top-level epochs (which checkpoints) is the closest key
    ("attack", "checkpoint=x.pt trainer.epochs=3", ["trainer.epochs is not a key of trainer", "did you mean epochs?"]),
]


# --- keys added with +, which Hydra accepts whatever they are ------------------------------------

ADDED = [
    ("train", "+trainer.epoch=3", ["trainer.epoch is not a key of trainer", "did you mean trainer.epochs?"]),
    ("train", "+method.alfa=1", ["method.alfa is not a key of method", "did you mean method.alpha?"]),
    ("train", "method=trades_sat +method.natural.alfa=1", ["method.natural.alfa is not a key of method.natural",
                                                           "method.natural.alpha"]),
    ("train", "+foo=1", ["foo is not a key of the config", "accepted: augment, dataset, device"]),
    ("train", "+optimizer.lrr=0.1", ["optimizer.lrr is not a key of optimizer", "did you mean optimizer.lr?"]),
    ("train", "+paths.data=x", ["paths.data is not a key of paths", "paths.data_dir"]),
    ("evaluate", "checkpoint=x.pt +trainer.batch_size=8", ["trainer.batch_size is not a key of trainer",
                                                           "trainer.eval_batch_size"]),
    ("attack", "checkpoint=x.pt +attack.stepz=3", ["attack.stepz is not a key of attack", "attack.steps"]),
]


@pytest.mark.parametrize("entry,overrides,contains", COMPOSITION + ADDED,
                         ids=[f"{e}:{o}" for e, o, _ in COMPOSITION + ADDED])
@pytest.mark.e2e  # starts a process
def test_a_config_that_does_not_compose_or_adds_a_key_nothing_takes_is_one_line(tmp_path, entry, overrides, contains):
    message = refused(entry, overrides, tmp_path)
    for text in contains:
        assert text in message, message
    assert not (tmp_path / "out").exists()


def test_added_keys_that_exist_somewhere_are_accepted(compose_cfg):
    """What the check lets through: constructor arguments a node does not list (SGD's
    dampening), following **kwargs up the classes (SAT+SCE passes reference_width on to SAT)."""
    from sat.config.keys import check_keys

    cfg = compose_cfg("train", ["method=sat_sce", "~method.reference_width", "+method.reference_width=32",
                                "+optimizer.dampening=0.1"])
    check_keys(cfg)
    assert cfg.method.reference_width == 32 and cfg.optimizer.dampening == 0.1


# --- values the schema's types cannot refuse: range checks, one line each -----------------------


def test_trainer_settings_keep_their_range_checks(compose_cfg):
    cfg = compose_cfg("train", ["trainer.batch_size=0", "trainer.precision=fp16"])
    with pytest.raises(UserError, match=r"^trainer.batch_size=0 is out of range; accepted: an integer >= 1$"):
        TrainerSettings.from_config(cfg.trainer)
    cfg.trainer.batch_size = 8
    with pytest.raises(UserError, match=r"^trainer.precision='fp16' is not supported; accepted: auto, bf16, fp32$"):
        TrainerSettings.from_config(cfg.trainer)
    cfg.trainer.precision = "fp32"
    settings = TrainerSettings.from_config(cfg.trainer)
    assert (settings.batch_size, settings.epochs, settings.precision, settings.eval_every) == (8, 200, "fp32", 1)


# --- library messages name the key the value came from ------------------------------------------

PREFIXED = [
    ("method=trades_sat method.natural.alpha=1.5", "method.natural.alpha=1.5 is out of range"),
    ("method=trades_sat method.beta=-1", "method.beta=-1.0 is out of range"),
    ("method=sat method.alpha=abc", "method.alpha='abc' is not a number"),
    ("noise.rate=2", "noise.rate=2.0 is out of range"),
    ("model.width=0", "model.width=0 is out of range; accepted: an integer >= 1"),
    # refused by the method once the run's length is known (TRADES names its natural loss)
    ("method=trades_sat method.natural.start_epoch=70 trainer.epochs=3",
     "method.natural.start_epoch=70 >= trainer.epochs=3, so SAT would never start; accepted: "
     "method.natural.start_epoch < 3"),
    ("method=sat method.start_epoch=5 trainer.epochs=3", "method.start_epoch=5 >= trainer.epochs=3"),
    # a part's refusal, named through its owner (SAT's start detector), at construction and once the length is known
    ("method=sat method.start_epoch=auto method.auto_start=null",
     "method.start_epoch='auto' needs method.auto_start (a detector); accepted: one of conf/auto_start/ (val_acc, "
     "prediction_changes) as method.auto_start"),
    ("method=sat method.start_epoch=auto method.auto_start.max_epoch=5 trainer.epochs=3",
     "method.auto_start.max_epoch=5 >= trainer.epochs=3, so SAT might never start; accepted: "
     "method.auto_start.max_epoch < 3"),
    # refused once the data (its classes) or the machine is known: by the method's set-up, the loader
    ("method=gambler method.reward=50", "method.reward=50.0 is out of range for 4 classes; accepted: "
                                              "1 < method.reward <= 4"),
    ("loader.decode=cuda", "loader.decode='cuda' but JPEG decoding on cpu is not available here"),
]


@pytest.mark.parametrize("overrides,message", PREFIXED, ids=[o for o, _ in PREFIXED])
def test_a_refused_value_is_named_by_its_config_key(tmp_path, overrides, message):
    tiny = [o for o in TINY if not o.startswith(("method.", "trainer.epochs"))]
    with pytest.raises(UserError) as e:
        sat.train([*tiny, *overrides.split()], output_dir=tmp_path / "run")
    assert str(e.value).startswith(message), str(e.value)


def test_library_checks_name_the_argument_only():
    from sat.methods.sat import SelfAdaptiveTraining
    from sat.methods.trades import TRADES

    with pytest.raises(UserError, match=r"^alpha=1.5 is out of range"):
        SelfAdaptiveTraining(alpha=1.5)
    method = TRADES(natural=SelfAdaptiveTraining(start_epoch=70))
    with pytest.raises(UserError, match=r"^natural.start_epoch=70 >= trainer.epochs=3"):
        method.plan(3)


def test_a_structured_refusal_is_named_by_its_path_and_a_free_form_one_is_left_as_it_is():
    error = UserError(key="start_epoch", value=70, problem=">= trainer.epochs=3 (with {.alpha} 0.9)",
                      accepted="{key} < 3")
    named = error.within("natural").from_node("method")
    assert str(named) == ("method.natural.start_epoch=70 >= trainer.epochs=3 (with method.natural.alpha 0.9); "
                          "accepted: method.natural.start_epoch < 3")
    assert named.from_node("report") is named and named.within("x") is named  # named from the root: final
    root = UserError("{key}=/data: no list there; set {.download}=true", key="root").from_node("dataset")
    assert str(root) == "dataset.root=/data: no list there; set dataset.download=true"
    assert str(root.renamed({"dataset.root": "dataset_root"})) == \
        "dataset_root=/data: no list there; set dataset.download=true"
    # a message about something else (a file, the group option) is never rewritten
    free = UserError("noise=flip needs 2 classes; rate=0.4 seen")
    assert free.within("natural") is free and free.from_node("noise") is free and free.renamed({"rate": "x"}) is free
    with pytest.raises(UserError) as e:
        with validate.config_node("noise"):
            with validate.argument("part"):
                raise UserError(key="rate", value=True, problem="is not a number")
    assert str(e.value) == "noise.part.rate=true is not a number"


# --- the trust registry comes from the class definitions ----------------------------------------


def test_the_registry_is_built_by_the_decorator_with_old_names_as_aliases():
    from sat.config import trust
    from sat.methods.sat import SelfAdaptiveTraining
    from sat.models.small import SmallCNN

    methods, models = trust.project_targets("method"), trust.project_targets("model")
    assert {"sat.methods.sat.SelfAdaptiveTraining", "sat.methods.SelfAdaptiveTraining"} <= methods
    assert {"sat.models.small.SmallCNN", "sat.models.SmallCNN"} <= models
    assert "sat.methods.auto_start.AutoStartEpoch" in trust.project_targets("component")
    # a checkpoint written before (package paths) still builds, to the same classes
    old = trust.build({"_target_": "sat.methods.SelfAdaptiveTraining", "alpha": 0.8, "start_epoch": 2}, "method",
                      "method")
    assert type(old) is SelfAdaptiveTraining and old.alpha == 0.8
    assert trust.resolve("sat.models.SmallCNN", "model", "model") is SmallCNN
    # the kind must match, and only marked classes pass
    with pytest.raises(UserError, match="not allowed"):
        trust.resolve("sat.models.small.SmallCNN", "method", "method")
    for name in ("sat.run.checkpoint.os.system", "sat.methods.sat.scale_for_width", "sat.methods.base.Method"):
        with pytest.raises(UserError, match="not allowed"):
            trust.resolve(name, "method", "method")


def test_a_new_class_is_trusted_by_its_decorator_alone():
    from sat.config import trust
    from sat.methods.base import Method

    @trust.trusted("method", "sat.methods.Probe")
    class Probe(Method):
        pass

    name = f"{Probe.__module__}.{Probe.__qualname__}"
    try:
        assert trust.resolve(name, "method", "method") is Probe
        assert trust.resolve("sat.methods.Probe", "method", "method") is Probe
    finally:  # leave the registry as the project's classes made it
        for n in (name, "sat.methods.Probe"):
            trust.SAT_TARGETS["method"].discard(n)
            trust._classes.pop(n)
    with pytest.raises(ValueError, match="kind='methods'"):
        trust.trusted("methods")


# --- every log line of a sweep job names its job ------------------------------------------------


def test_a_sweep_job_is_named_by_its_number_and_swept_values(monkeypatch):
    from sat.tasks.context import SWEPT_KEYS, sweep_job

    hydra = OmegaConf.create({"mode": "RunMode.MULTIRUN", "job": {"num": 3},
                              "overrides": {"task": ["experiment=dd_digits", "model.width=8", "method=sat", "seed=0"]},
                              "sweeper": {"params": {"model.width": "1,2,4,8"}}})
    monkeypatch.delenv(SWEPT_KEYS, raising=False)
    assert sweep_job(hydra) == " [job 3 model.width=8]"  # a sweep declared in YAML
    monkeypatch.setenv(SWEPT_KEYS, "method,seed")  # ... and on the command line (-m method=ce,sat seed=0,1)
    assert sweep_job(hydra) == " [job 3 model.width=8 method=sat seed=0]"
    assert sweep_job(OmegaConf.merge(hydra, {"mode": "RunMode.RUN"})) == ""  # a single run says nothing more


def test_the_log_format_and_end_box_carry_the_job(compose_cfg, capsys, monkeypatch):
    from hydra.core.hydra_config import HydraConfig

    from sat.tasks.context import SWEPT_KEYS
    from sat.tasks.train.outputs import print_run_table

    monkeypatch.setenv(SWEPT_KEYS, "method")
    cfg = compose_cfg("train", ["method=sat", "paths.output_dir=/tmp/x"], return_hydra_config=True)
    cfg.hydra.mode = "MULTIRUN"
    cfg.hydra.job.num = 1
    HydraConfig.instance().set_config(cfg)
    try:
        fmt = OmegaConf.select(cfg, "hydra.job_logging.formatters.simple.format")
        record = logging.LogRecord("sat", logging.INFO, "x", 1, "start epoch 640 capped at 30", None, None)
        assert logging.Formatter(fmt).format(record).endswith("[sat][INFO] [job 1 method=sat] - start epoch 640 "
                                                              "capped at 30")
        print_run_table({"noise": {"kind": "uniform", "rate": 0.4, "realised_error": 0.36}, "final": {},
                         "at_best_val": None, "output_dir": "/tmp/x", "epochs_done": 2})
    finally:
        HydraConfig.instance().cfg = None
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) > 5 and all(line.startswith("[job 1 method=sat] ") for line in lines), lines


# --- through the real entry point: exit status 2 and one line ------------------------------------
