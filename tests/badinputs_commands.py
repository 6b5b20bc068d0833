"""The command corpus: bad option values, outputs that collide with inputs or the workspace,
damaged workspaces, forged bundles, special files and failing models, for every command.

Run by ``test_bad_inputs.py`` with the import corpus of ``badinputs.py``: each case must give one
``embridge: error:`` line naming ``bad`` (a path, an option or a name), exit with ``code`` (1, or 2
for a usage error) and leave every file under the test's folder byte-identical.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import badinput_builders as mk
import badinput_command_builders as cb
import numpy as np
from badinput_builders import Env
from badinputs import Case

__all__ = ["COMMAND_CASES", "CommandCase"]


@dataclass(frozen=True)
class CommandCase(Case):
    code: int = 1  # 2: a usage error caught by the option parser, before anything runs


def _c(name: str, build: Callable[[Env], Path | str], args: tuple[str, ...], expect: str,
       code: int = 1, app: str | None = None) -> CommandCase:
    return CommandCase(name, build, args, expect, app, code)


WS = ("-w", "{ws}")
EMBED = ("embed", *WS, "--model", "v1")
TRAIN = ("train", *WS, "--method", "procrustes", "--old", "v1", "--new", "v3")
REPORT = ("report", *WS, "--run", "3")
PLAN = ("plan", *WS, "--run", "3")
CHAIN = ("chain", *WS, "--models", "v1,v2,v3", "--runs", "1,2")
EXPORT = ("bundle", "export", *WS, "--run", "3")
VERIFY = ("bundle", "verify", "{bundle}")
INSPECT = ("bundle", "inspect", "{bundle}")
APPLY = ("bundle", "apply", "{in}/b.zip", "--vectors", "{in}/q.npy")
MODEL_ADD = ("model", "add", *WS, "--path")

# -- numeric options: every one of every command refuses NaN, inf, a wrong type and an out-of-range
# value as a one-line usage error (exit 2) before anything is opened.
_OPTIONS: list[tuple[str, tuple[str, ...], str, list[str], str]] = [
    # (case prefix, command, option, bad values, expected text)
    ("embed", EMBED, "--sample", ["-3", "0", "nan", "1.5", "many"], "expected an integer from 1"),
    ("embed", EMBED, "--seed", ["-1", "4294967296", "inf"], "expected an integer from 0 to 4294967295"),
    ("embed", EMBED, "--batch-size", ["0", "-8", "2000000"], "expected an integer from 1 to 1048576"),
    ("demo", ("demo", "-w", "{in}/demo"), "--seed", ["-1"], "expected an integer from 0"),
    ("train", TRAIN, "--epochs", ["0", "-5", "nan"], "expected an integer from 1"),
    ("train", TRAIN, "--lr", ["nan", "inf", "0", "-0.1", "1e9"], "expected a number above 0"),
    ("train", TRAIN, "--batch-size", ["0", "1"], "expected an integer from 2"),
    ("train", TRAIN, "--seed", ["-1"], "expected an integer from 0"),
    ("report", REPORT, "--bootstrap", ["-1", "0", "2", "nan", "1e3"], "expected an integer from 20 to 100000"),
    ("report", REPORT, "--exact-max", ["-1"], "expected an integer from 0"),
    ("report", REPORT, "--backfill-steps", ["0", "1", "-4"], "expected an integer from 2 to 1001"),
    ("report", ("report", *WS), "--run", ["0", "-2", "x"], "expected an integer from 1 to 9223372036854775807"),
    ("plan", PLAN, "--gain-threshold", ["nan", "1.5", "-0.1", "inf"], "expected a number from 0 to 1"),
    ("plan", PLAN, "--target-share", ["0", "nan"], "expected a number above 0 and at most 1"),
    ("plan", PLAN, "--fraction", ["2", "-1", "nan", "0"], "expected a number above 0 and at most 1"),
    ("chain", CHAIN, "--exact-max", ["-1", "nan"], "expected an integer from 0"),
    ("export", (*EXPORT, "--out", "{in}/b.zip"), "--probes", ["0", "-1", "nan"], "expected an integer from 1"),
    ("export", ("bundle", "export", *WS, "--out", "{in}/b.zip"), "--run", ["0"], "expected an integer from 1 to 9223372036854775807"),
    ("export", (*EXPORT, "--out", "{in}/b.zip"), "--report", ["0", "-3"], "expected an integer from 1 to 9223372036854775807"),
    ("verify", VERIFY, "--max-member-mb", ["nan", "0", "-1", "inf"], "expected a number above 0"),
    ("verify", VERIFY, "--max-total-mb", ["nan", "0", "-1"], "expected a number above 0"),
    ("inspect", INSPECT, "--max-member-mb", ["-5"], "expected a number above 0"),
    ("apply", (*APPLY, "--out", "{in}/out.npy"), "--chunk-rows", ["0", "-1", "nan", "1000000000"],
     "expected an integer from 1"),
    ("apply", (*APPLY, "--out", "{in}/out.npy"), "--max-total-mb", ["nan"], "expected a number above 0"),
    ("report", REPORT, "--shards", ["0", "-2", "nan"], "expected an integer from 1"),
    ("transform", ("transform", "--bundle", "{in}/b.zip", "--from", "{in}/g", "--to", "{in}/o"), "--num-cpus",
     ["0", "nan"], "expected an integer from 1"),
    ("embed-dataset", ("embed-dataset", "--model", "{in}/m.pt", "--from", "{in}/g", "--to", "{in}/o"), "--chunk",
     ["0", "1.5"], "expected an integer from 1"),
    ("embed-dataset", ("embed-dataset", "--model", "{in}/m.pt", "--from", "{in}/g", "--to", "{in}/o"), "--num-gpus",
     ["nan", "-1", "inf"], "expected a number from 0 to 64"),
]


def _slug(value: str) -> str:
    return value.replace("-", "minus").replace(".", "p")


OPTION_CASES = [
    _c(f"opt-{prefix}-{flag.strip('-')}-{_slug(value)}", lambda e, f=flag: f, (*cmd, flag, value), expect, code=2)
    for prefix, cmd, flag, values, expect in _OPTIONS for value in values
]

# -- outputs: never the workspace, inside it, above it, an input, or inside an input ---------------
OUTPUT_CASES = [
    _c("out-export-is-the-workspace", lambda e: e.ws, (*EXPORT, "--out", "{ws}", "--overwrite"), "is the workspace"),
    _c("out-export-into-workspace-vectors", lambda e: e.ws / "vectors",
       (*EXPORT, "--out", "{ws}/vectors", "--overwrite"), "inside the workspace"),
    _c("out-export-replaces-the-database", lambda e: e.ws / "embridge.db",
       (*EXPORT, "--out", "{ws}/embridge.db", "--overwrite"), "inside the workspace"),
    _c("out-export-zip-inside-workspace", lambda e: e.ws / "bundles" / "b.zip",
       (*EXPORT, "--out", "{ws}/bundles/b.zip"), "inside the workspace"),
    _c("out-export-above-the-workspace", lambda e: e.root, (*EXPORT, "--out", "{ws}/..", "--overwrite"),
       "holding the workspace"),
    _c("out-export-inside-another-workspace", lambda e: cb.other_workspace(e) / "b.zip",
       (*EXPORT, "--out", "{bad}"), "inside the workspace"),
    _c("out-export-overwrites-a-plain-folder", cb.user_folder, (*EXPORT, "--out", "{bad}", "--overwrite"),
       "not a bundle"),
    _c("out-export-overwrites-a-non-bundle-zip", lambda e: mk.write(e.inputs / "photos.zip", b"not a zip"),
       (*EXPORT, "--out", "{bad}", "--overwrite"), "not a bundle"),
    _c("out-export-overwrites-a-plain-file", lambda e: mk.write(e.inputs / "notes", b"mine"),
       (*EXPORT, "--out", "{bad}", "--overwrite"), "is a file"),
    _c("out-export-overwrites-through-a-link", cb.link_to_bundle, (*EXPORT, "--out", "{bad}", "--overwrite"),
       "symbolic link"),
    _c("out-export-exists", cb.bundle_copy, (*EXPORT, "--out", "{bad}"), "already exists"),
    _c("out-apply-is-the-bundle", lambda e: (cb.vectors(e), cb.bundle_copy(e))[1], (*APPLY, "--out", "{bad}"),
       "is also an input"),
    _c("out-apply-inside-unzipped-bundle", lambda e: (cb.vectors(e), cb.bundle_copy(e), cb.unzipped_bundle(e))[2]
       / "probes" / "out.npy",
       ("bundle", "apply", "{in}/unzipped", "--vectors", "{in}/q.npy", "--out", "{bad}"), "inside the input"),
    _c("out-apply-above-unzipped-bundle", lambda e: (cb.vectors(e), cb.unzipped_bundle(e))[1],
       ("bundle", "apply", "{in}/unzipped/probes", "--vectors", "{in}/q.npy", "--out", "{bad}"), "holding the input"),
    _c("out-apply-is-the-vectors", lambda e: (cb.bundle_copy(e), cb.vectors(e))[1], (*APPLY, "--out", "{bad}"),
       "is also an input"),
    _c("out-apply-partial-is-the-vectors", lambda e: (cb.bundle_copy(e), cb.vectors(e, "o.npy.partial"))[1],
       ("bundle", "apply", "{in}/b.zip", "--vectors", "{bad}", "--out", "{in}/o.npy"), "is also an input"),
    _c("out-apply-is-an-existing-folder", lambda e: (cb.bundle_copy(e), cb.vectors(e), cb.user_folder(e))[2],
       (*APPLY, "--out", "{bad}"), "is a folder"),
    _c("out-apply-inside-the-workspace", lambda e: (cb.bundle_copy(e), cb.vectors(e), e.ws / "vectors" / "o.npy")[2],
       (*APPLY, "--out", "{bad}"), "inside the workspace"),
    _c("out-apply-is-the-old-vectors", lambda e: (cb.bundle_copy(e), cb.vectors(e), cb.vectors(e, "old.npy", 16))[2],
       (*APPLY, "--old-vectors", "{in}/old.npy", "--out", "{bad}"), "is also an input"),
    _c("out-apply-users-partial-file", lambda e: (cb.bundle_copy(e), cb.vectors(e),
                                                  mk.write(e.inputs / "o.npy.partial", b"my data"))[2],
       (*APPLY, "--out", "{in}/o.npy"), "exists without o.npy.progress.json"),
    _c("out-apply-foreign-progress-file", lambda e: (cb.bundle_copy(e), cb.vectors(e),
                                                     mk.write(e.inputs / "o.npy.progress.json", b'{"mine": 1}'))[2],
       (*APPLY, "--out", "{in}/o.npy"), "not the progress file of a 'bundle apply'"),
    _c("out-apply-partial-is-a-link", lambda e: (cb.bundle_copy(e), cb.vectors(e),
                                                 cb.link_named(e, "o.npy.partial", cb.user_folder(e) / "thesis.txt"))[2],
       (*APPLY, "--out", "{in}/o.npy"), "is a link or a folder"),
    _c("out-apply-while-another-apply-writes", lambda e: (cb.bundle_copy(e), cb.held_apply_lock(e))[1],
       (*APPLY, "--out", "{bad}"), "another 'bundle apply' is writing this output"),
]

# -- inputs that are not what they claim -----------------------------------------------------------
INPUT_CASES = [
    _c("in-apply-vectors-npz", lambda e: (cb.bundle_copy(e), mk.npz(e.inputs / "q.npz", np.ones((2, 32))))[1],
       ("bundle", "apply", "{in}/b.zip", "--vectors", "{bad}", "--out", "{in}/o.npy"), "not an .npz archive"),
    _c("in-apply-vectors-fifo", lambda e: (cb.bundle_copy(e), cb.fifo(e, "q.npy"))[1],
       ("bundle", "apply", "{in}/b.zip", "--vectors", "{bad}", "--out", "{in}/o.npy"), "is a FIFO"),
    _c("in-apply-vectors-folder", lambda e: (cb.bundle_copy(e), cb.user_folder(e))[1],
       ("bundle", "apply", "{in}/b.zip", "--vectors", "{bad}", "--out", "{in}/o.npy"), "is a folder"),
    _c("in-model-fifo", cb.fifo, (*MODEL_ADD, "{bad}", "--name", "piped"), "is a FIFO"),
    # an unknown kind is the option's mistake, not the file's: a usage error naming --kind (it named the file, exit 1)
    _c("in-model-unknown-kind", lambda e: "--kind", (*MODEL_ADD, "{in}/kind.pt", "--name", "k", "--kind", "tflite"),
       "argument --kind: invalid choice: 'tflite'", code=2),
    _c("in-model-device", lambda e: "/dev/zero", (*MODEL_ADD, "{bad}", "--name", "zeros"), "is a device"),
    _c("in-model-text-file", cb.text_file, (*MODEL_ADD, "{bad}", "--name", "notes"),
       "not a valid PyTorch checkpoint", app="model"),
    _c("in-model-text-file-as-torchscript", lambda e: cb.text_file(e, "notes.ts"),
       (*MODEL_ADD, "{bad}", "--name", "notes"), "not a loadable TorchScript file"),
    _c("in-model-raises-in-forward", cb.raising_model, (*MODEL_ADD, "{bad}", "--name", "raiser"),
       "the model rejects inputs .*this model refuses to work", app="model"),
    _c("in-model-config-asks-for-huge-layers", cb.huge_config_checkpoint, (*MODEL_ADD, "{bad}", "--name", "big"),
       r"the file holds \(4, 8\), the config asks for \(100000, 8\)"),
    _c("in-jsonl-deeply-nested", cb.deep_json_line, ("import", *WS, "--path", "{bad}"), "line 1: JSON nested too deeply"),
    _c("in-runs-unknown-kind", lambda e: "--kind", ("runs", *WS, "--kind", "bogus"), "invalid choice", code=2),
    _c("in-train-set-lr-own-option", lambda e: "--set", (*TRAIN, "--set", "lr=Infinity"),
       "lr has its own option: use --lr", code=2),
    _c("in-train-set-temperature-infinity", lambda e: "'temperature'", ("train", *WS, "--method", "mlp", "--old", "v1",
                                                                         "--new", "v3", "--set", "temperature=1e300"),
       r"must be a number in \[0.0001, 10000\]", code=2),
    _c("in-train-set-patience-negative", lambda e: "'patience'", ("train", *WS, "--method", "mlp", "--old", "v1",
                                                                   "--new", "v3", "--set", "patience=-1"),
       r"must be an integer in \[1, 1000000000\]", code=2),
    _c("in-train-set-weight-decay-nan", lambda e: "'weight_decay'", ("train", *WS, "--method", "mlp", "--old", "v1",
                                                                      "--new", "v3", "--set", "weight_decay=NaN"),
       r"must be a number in \[0, 1000\]", code=2),
]

# -- names that would become paths (an option's value refused before any work: exit status 2) ------------
_BAD_NAMES = {"dotdot": "../../x", "slash": "a/b", "absolute": "/tmp/x", "empty": "", "space": "my model",
              "hidden": ".hidden", "backslash": "a\\b", "reserved": "CON", "trailing-dot": "v.",
              "too-long": "m" * 65, "newline": "a\nb", "dotdot-inside": "a..b"}
NAME_CASES = [
    _c(f"name-model-add-{label}", lambda e: "--name", (*MODEL_ADD, "{in}/m.pt", "--name", name),
       "it becomes a file name", code=2)
    for label, name in _BAD_NAMES.items()
] + [
    _c(f"name-model-rename-{label}", lambda e: "--to", ("model", "rename", *WS, "--name", "v1", "--to", name),
       "it becomes a file name", code=2)
    for label, name in _BAD_NAMES.items() if name
] + [
    _c("name-stored-model-escapes", cb.renamed_model("../../evil"),
       ("import", *WS, "--path", "{in}/more.npz", "--model", "../../evil"), "escapes its folder"),
]

# -- damaged workspaces ----------------------------------------------------------------------------
WORKSPACE_CASES = [
    _c("db-empty-file", cb.empty_db, ("info", *WS), r"is empty \(0 bytes\)", app="open"),
    _c("db-empty-file-import", cb.empty_db, ("import", *WS, "--path", "{in}/x.csv"), r"is empty \(0 bytes\)"),
    _c("db-is-a-folder", cb.db_is_a_folder, ("info", *WS), "not a regular file"),
    _c("db-dropped-items-table", cb.dropped_table("items"), ("info", *WS), "table 'items' is missing", app="open"),
    _c("db-dropped-runs-table", cb.dropped_table("runs"), ("runs", *WS), "table 'runs' is missing"),
    _c("db-dropped-vector-sets-table", cb.dropped_table("vector_sets"), ("model", "list", *WS),
       "table 'vector_sets' is missing"),
    _c("db-dropped-judgments-table", cb.dropped_table("judgments"), ("info", *WS), "table 'judgments' is missing"),
    _c("db-dropped-column", cb.dropped_column, ("runs", *WS), "table 'runs' lacks column"),
]

# -- forged bundle manifests (checksums rewritten to match) -----------------------------------------
_FORGED = [
    ("adapter-file-absolute", cb.manifest_edit("adapter.file", "/etc/passwd"), "adapter.file"),
    ("adapter-file-escapes", cb.manifest_edit("adapter.file", "../adapter.pt"), "adapter.file"),
    ("in-dim-string", cb.manifest_edit("adapter.in_dim", "32"), "adapter.in_dim"),
    ("in-dim-zero", cb.manifest_edit("adapter.in_dim", 0), "adapter.in_dim"),
    ("in-dim-bool", cb.manifest_edit("adapter.in_dim", True), "adapter.in_dim"),
    ("out-dim-negative", cb.manifest_edit("adapter.out_dim", -16), "adapter.out_dim"),
    ("out-dim-huge", cb.manifest_edit("adapter.out_dim", 10**12), "adapter.out_dim"),
    ("adapter-empty", cb.manifest_edit("adapter", {}), "adapter"),
    ("adapter-list", cb.manifest_edit("adapter", [1, 2]), "adapter"),
    ("inputs-empty", cb.manifest_edit("adapter.inputs", []), "adapter.inputs"),
    ("inputs-unknown", cb.manifest_edit("adapter.inputs", ["x"]), "adapter.inputs"),
    ("kind-number", cb.manifest_edit("adapter.kind", 7), "adapter.kind"),
    ("normalisation-missing", cb.manifest_drop("normalisation"), "normalisation"),
    ("created-number", cb.manifest_edit("created", 5), "created"),
    ("chain-string", cb.manifest_edit("chain", "run 1"), "chain"),
    ("gallery-string", cb.manifest_edit("gallery_transformed", "all of it"), "gallery_transformed"),
    ("models-list", cb.manifest_edit("models", []), "models"),
    ("metrics-values-list", cb.manifest_edit("metrics.values", [1]), "metrics.values"),
    ("probes-list", cb.manifest_edit("probes", []), "probes"),
]
FORGED_CASES = [
    _c(f"bundle-forged-{label}-{action}", build, (*cmd, "{bad}"), f"field '{re.escape(field)}'")
    for label, build, field in _FORGED
    for action, cmd in (("verify", ("bundle", "verify")), ("inspect", ("bundle", "inspect")))
    if action == "verify" or label in ("adapter-empty", "in-dim-string", "normalisation-missing", "chain-string")
] + [
    _c("bundle-forged-deeply-nested-manifest", cb.deeply_nested_manifest, ("bundle", "verify", "{bad}"),
       "nested too deeply"),
    _c("bundle-forged-deeply-nested-manifest-inspect", cb.deeply_nested_manifest, ("bundle", "inspect", "{bad}"),
       "nested too deeply"),
    _c("bundle-forged-adapter-raises-in-forward", cb.adapter_raising_in_forward, ("bundle", "verify", "{bad}"),
       "fails on the probe vectors"),
    _c("bundle-forged-empty-adapter-file", cb.empty_adapter_file, ("bundle", "verify", "{bad}"),
       "not a loadable TorchScript module"),
    _c("bundle-forged-apply-string-dims", lambda e: (cb.vectors(e), cb.manifest_edit("adapter.in_dim", "32")(e))[1],
       ("bundle", "apply", "{bad}", "--vectors", "{in}/q.npy", "--out", "{in}/o.npy"), r"field 'adapter\.in_dim'"),
]

COMMAND_CASES: list[CommandCase] = [*OPTION_CASES, *OUTPUT_CASES, *INPUT_CASES, *NAME_CASES, *WORKSPACE_CASES,
                                    *FORGED_CASES]
