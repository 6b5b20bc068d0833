"""``embridge report --fail-under`` / ``--junit``: a release gate on a real report of the demo workspace."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from embridge.core.cli.main import main
from embridge.core.errors import InputError
from embridge.core.evaluation.headline import report_number_names
from embridge.core.report.gate import (
    NOT_METRICS,
    Check,
    CheckResult,
    evaluate,
    exact,
    junit_error_xml,
    junit_xml,
    parse_check,
)
from embridge.core.store import Workspace


def test_parse_and_evaluate_checks() -> None:
    assert parse_check("gain_retained=0.5") == Check("gain_retained", ">=", 0.5)
    assert parse_check("negative_flip_rate<=0.05") == Check("negative_flip_rate", "<=", 0.05)
    assert parse_check("ndcg@10>=0.3").metric == "ndcg@10"
    assert parse_check("arr>=1e-3").threshold == 0.001 and parse_check("n_queries>=+12").threshold == 12
    for raw in ("1_0", "\u0665", "\uff15", "nan", "0x10", "1e999"):  # float() took the first three
        with pytest.raises(InputError, match="--fail-under"):
            parse_check(f"gain_retained={raw}")
    assert parse_check("a>=1e-310").threshold == 1e-310  # a subnormal double is still not 0
    for raw in ("1e-400", "3e-330"):  # read as 0: the check named a bound nobody typed
        with pytest.raises(InputError, match=f"the threshold {raw} is too small to be held apart from 0"):
            parse_check(f"negative_flip_rate<={raw}")
    assert parse_check("negative_flip_rate<=0e-400").threshold == 0 and parse_check("a>=2e-300").threshold == 2e-300
    results = evaluate([parse_check("a=0.5"), parse_check("b<=0.1"), parse_check("c=0"), parse_check("zz=1")],
                       {"a": 0.5, "b": 0.2, "c": None, "c_note": "the new model gains nothing"})
    assert [r.passed for r in results] == [True, False, False, False]
    assert "gains nothing" in results[2].message and "no such metric" in results[3].message
    # a value just short of its bound is not rounded up to it, and the check is named as typed
    close = evaluate([parse_check("gain_retained>=0.26086956522")], {"gain_retained": 6 / 23})[0]
    assert not close.passed and close.check.text == "gain_retained>=0.26086956522"
    assert close.message == "gain_retained = 0.2608695652173913, required at least 0.26086956522"
    assert exact(1.0) == "1" and exact(1e-3) == "0.001" and exact(2.5e17) == "2.5e+17"


def test_junit_xml_holds_any_message_as_text_xml_can_hold() -> None:
    message = "the report could not be built: W\x1bX\x01\ufffe: not an Embridge workspace"
    root = ET.fromstring(junit_error_xml(message))  # a control character made the file unreadable
    shown = root.find("testsuite/testcase/error").get("message")
    assert shown == "the report could not be built: W\\x1bX\\x01\\ufffe: not an Embridge workspace"
    cases = [CheckResult(Check("gain_retained", ">=", 0.5), None, False, "gain_retained: undefined (\x0b)")]
    assert ET.fromstring(junit_xml(cases)).find("testsuite/testcase/failure").get("message").endswith("(\\x0b)")


def test_gate_on_a_real_report(demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(demo_copy)
    assert main(["train", "--workspace", ws, "--method", "procrustes", "--device", "cpu", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    with Workspace.open(ws) as opened:  # one duration of the run wherever it is shown; the fit's is within it
        assert trained["duration_s"] == opened.run(trained["run_id"])["duration_s"]
        assert 0 < trained["fit_s"] <= trained["duration_s"] < trained["fit_s"] + 120
    junit = tmp_path / "gate.xml"
    code = main(["report", "--workspace", ws, "--bootstrap", "200", "--json", "--junit", str(junit),
                 "--fail-under", "gain_retained=0.0", "--fail-under", "negative_flip_rate<=0.5",
                 "--fail-under", "upgraded_top1>=1", "--fail-under", "ndcg@10=0.1"])
    out, err = capsys.readouterr()
    data = json.loads(out)  # the JSON still comes on stdout
    assert code == 1
    gate_lines = [line for line in err.splitlines() if line.startswith("embridge: gate failed")]
    assert len(gate_lines) == 2
    assert "upgraded_top1" in gate_lines[0]  # and why nDCG@10 is missing: not a misspelling, no judgments
    assert "ndcg@10: it is measured only with relevance judgments (import them with --qrels)" in gate_lines[1]
    with Workspace.open(ws) as opened:  # each number with the cell and the queries and gallery it was measured on
        stored = json.loads((Path(ws) / opened.report(data["report_id"])["json_file"]).read_text())
    upgraded = stored["cells"][data["upgraded_cell"]]["protocol"]["text"]
    assert gate_lines[0].endswith(f"({data['upgraded_cell']} on {upgraded})") and "997 items" in upgraded
    numbers = {k for k, v in data.items() if isinstance(v, int | float) and k not in NOT_METRICS}
    assert {"old_old_top1", "gain_retained", "compatible", "arr"} <= numbers <= report_number_names()
    assert [c["passed"] for c in data["gate"]["checks"]] == [data["gain_retained"] >= 0, data["negative_flip_rate"] <= 0.5,
                                                          False, False]
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("tests") == "4" and suite.get("failures") == "2"
    assert [c.get("name") for c in cases] == ["gain_retained>=0", "negative_flip_rate<=0.5", "upgraded_top1>=1",
                                              "ndcg@10>=0.1"]
    failed = {c.get("name"): c.find("failure").get("message") for c in cases if c.find("failure") is not None}
    assert f"= {exact(data['upgraded_top1'])}, required at least 1" in failed["upgraded_top1>=1"] and upgraded in failed["upgraded_top1>=1"]
    code = main(["report", "--workspace", ws, "--bootstrap", "200", "--fail-under", "gain_retained>=1.5"])
    gain_line = capsys.readouterr().err.strip().splitlines()[-1]
    ceiling = stored["cells"][data["ceiling_cell"]]["protocol"]["text"]  # new/new searched the 600-item sample
    # gain retained is measured on new/new's 600-item sample, old/old and the upgraded cell with it
    assert code == 1 and gain_line.endswith(f"({data['upgraded_cell']} against old/old and {data['ceiling_cell']} "
                                            f"on {ceiling})") and "600 items" in ceiling

    # every check passing: exit 0, the JUnit file is replaced by the new result
    code = main(["report", "--workspace", ws, "--bootstrap", "200", "--junit", str(junit),
                 "--fail-under", f"upgraded_top1={data['upgraded_top1']}",
                 "--fail-under", f"negative_flip_rate<={data['negative_flip_rate']}"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "gate: 2 of 2 checks passed" in out
    assert ET.parse(junit).getroot().get("failures") == "0"


def test_gate_bad_options(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(demo_copy)
    assert main(["report", "--workspace", ws, "--fail-under", "gain_retained~0.5"]) == 2
    assert "--fail-under" in capsys.readouterr().err
    # a --junit path refused is misuse (2), as an empty one is: a pipeline must not read it as a failed gate (1)
    code = main(["report", "--workspace", ws, "--junit", str(demo_copy / "gate.xml"), "--fail-under", "top1=0.1"])
    err = capsys.readouterr().err
    assert code == 2 and "--junit" in err and err.count("\n") == 1
    (demo_copy.parent / "notes.txt").write_text("mine\n")
    (demo_copy.parent / "folder").mkdir()
    for junit, problem, status in (("", "argument --junit: is empty", 2),
                                   (f"{demo_copy.parent}/gate.xml/", "ends with a path separator", 2),
                                   (str(demo_copy.parent / "folder"), "is a folder, not a regular file", 2),
                                   (f"{demo_copy.parent}/notes.txt", "exists and is not a JUnit XML file", 2),
                                   (f"{demo_copy.parent}/notes.txt/x.xml", "notes.txt is a file, not a folder", 2)):
        code = main(["report", "--workspace", ws, "--junit", junit, "--fail-under", "top1=0.1"])
        err = capsys.readouterr().err
        assert code == status and problem in err and err.count("\n") == 1, err
    code = main(["report", "--workspace", ws, "--junit", str(demo_copy.parent / "gate.xml")])  # no check at all
    err = capsys.readouterr().err
    assert code == 2 and "--junit: needs at least one --fail-under check" in err
    assert not (demo_copy.parent / "gate.xml").exists()
    assert (demo_copy.parent / "notes.txt").read_text() == "mine\n"


def test_a_check_no_report_can_pass_is_refused_before_any_work(demo_copy: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(demo_copy)
    assert main(["train", "--workspace", ws, "--method", "procrustes", "--device", "cpu"]) == 0
    capsys.readouterr()
    with Workspace.open(demo_copy) as store:
        reports = len(store.reports())
    junit = tmp_path / "gate.xml"
    for check, problem in (("gain_retaind=0.5", "no report has a metric named 'gain_retaind'; did you mean "
                            "gain_retained?"), ("report_id=1", "no report has a metric named 'report_id'; metrics: arr,"),
                           ("top1>=0.9", "no report has a metric named 'top1'; metrics: arr,"),
                           ("upgraded_top1>=1.01", "upgraded_top1 lies between 0 and 1, so this check could never pass"),
                           ("negative_flip_rate<=-0.01", "negative_flip_rate lies between 0 and 1"),
                           # checks no report can fail: a percent typed as a share keeps a gate green for ever
                           ("negative_flip_rate<=5", "negative_flip_rate lies between 0 and 1, so this check could "
                            "never fail (write shares as fractions: 0.05 for 5%)"),
                           ("upgraded_top1>=-0.1", "upgraded_top1 lies between 0 and 1, so this check could never fail"),
                           ("compatible=0", "compatible lies between 0 and 1, so this check could never fail"),
                           ("compatible=0.5", "compatible is yes or no (read as 1 or 0): write compatible=1 to "
                            "require it"),
                           ("compatible=2", "compatible is yes or no (read as 1 or 0): write compatible=1 to "
                            "require it"),
                           ("GAIN_RETAINED=0.5", "no report has a metric named 'GAIN_RETAINED'; did you mean "
                            "gain_retained?"),
                           ("n_queries>=-5", "n_queries is never below 0, so this check could never fail"),
                           ("arr=0", "arr is never below 0, so this check could never fail"),
                           ("relative_nfr<=-1", "relative_nfr is never below 0, so this check could never pass")):
        code = main(["report", "--workspace", ws, "--junit", str(junit), "--fail-under", "arr=0.5",
                     "--fail-under", check])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err  # misuse (2), never a failed gate's status (1)
        assert f"--fail-under: {parse_check(check).text}: {problem}" in err
        assert ("write shares as fractions" in err) == (parse_check(check).threshold > 1  # a percent typed as 5
                                                        and not check.startswith("compatible"))
        error = ET.parse(junit).getroot().find("testsuite/testcase/error")  # CI shows the refusal, not a pass
        assert error is not None and problem in error.get("message")
    with Workspace.open(demo_copy) as store:
        assert len(store.reports()) == reports


def test_yes_no_values_gate_as_one_and_zero_and_identifiers_are_not_metrics() -> None:
    values = {"compatible": True, "report_id": 3, "gain_retained": 0.3170732}
    results = evaluate([parse_check("compatible=1"), parse_check("report_id=1"), parse_check("gain_retained=0.3170733")],
                       values)
    assert [r.passed for r in results] == [True, False, False]
    assert "no such metric" in results[1].message and "compatible" in results[1].message
    assert results[2].message == "gain_retained = 0.3170732, required at least 0.3170733"  # not both 0.317073
    assert evaluate([parse_check("compatible=1")], {"compatible": False})[0].passed is False


def test_a_report_that_cannot_be_built_replaces_an_earlier_junit_result(demo_copy: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ws = _trained(demo_copy, capsys)
    junit = tmp_path / "gate.xml"
    assert main(_report_args(ws, junit)) == 0
    assert ET.parse(junit).getroot().get("failures") == "0"
    capsys.readouterr()
    code = main([*_report_args(ws, junit)[:4], "7", *_report_args(ws, junit)[5:]])  # run 7 does not exist
    err = capsys.readouterr().err
    assert code == 1 and "--run: names run 7, which the workspace does not hold" in err
    root = ET.parse(junit).getroot()
    assert root.get("errors") == "1" and root.get("failures") == "0"
    assert "the report could not be built: " in root.find("testsuite/testcase/error").get("message")
    assert "names run 7, which the workspace does not hold" in root.find("testsuite/testcase/error").get("message")


def test_a_refused_gate_or_option_replaces_an_earlier_junit_result(demo_copy: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in the gate (refused by the command) or a value argparse refuses (exit 2) leaves the JUnit file
    in error, not the earlier green result a CI page would go on showing beside the failed step."""
    ws = _trained(demo_copy, capsys)
    junit = tmp_path / "gate.xml"
    for change, code, said in ((("--fail-under", "ndcg@1O=0.5"), 2, "ndcg@1O"),
                               ((), 2, "--junit: needs at least one --fail-under check"),  # the gate's checks left out
                               (("--fail-under", "gain_retained=abc"), 2, "gain_retained=abc"),
                               (("--bootstrap", "5"), 2, "--bootstrap")):
        assert main(_report_args(ws, junit)) == 0
        assert ET.parse(junit).getroot().get("failures") == "0"
        capsys.readouterr()
        args = _report_args(ws, junit)
        assert main([*(args if change else [a for a in args if a != "gain_retained=0.1" and a != "--fail-under"]),
                     *change]) == code
        assert len(capsys.readouterr().err.splitlines()) == 1
        root = ET.parse(junit).getroot()
        assert (root.get("errors"), root.get("failures")) == ("1", "0"), change
        assert said in root.find("testsuite/testcase/error").get("message")


def test_a_refused_command_line_with_abbreviated_options_replaces_the_junit_result_too(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command line takes unambiguous prefixes of long options (``--jun``, ``--works``); the file is
    found behind them as the command found it, not left green because only full spellings were looked for."""
    ws = _trained(demo_copy, capsys)
    junit = tmp_path / "gate.xml"
    for spelled in ({"--junit": "--jun"}, {"--workspace": "--works"}, {"--junit": "--juni", "--workspace": "--w"}):
        assert main(_report_args(ws, junit)) == 0
        assert ET.parse(junit).getroot().get("errors") == "0"
        capsys.readouterr()
        args = [spelled.get(a, a) for a in _report_args(ws, junit)]
        assert main([*args, "--fail-under", "gain_retained=x"]) == 2
        assert len(capsys.readouterr().err.splitlines()) == 1
        root = ET.parse(junit).getroot()
        assert (root.get("errors"), root.get("failures")) == ("1", "0"), spelled
        assert "gain_retained=x" in root.find("testsuite/testcase/error").get("message")


def _trained(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> str:
    ws = str(demo_copy)
    assert main(["train", "--workspace", ws, "--method", "procrustes", "--device", "cpu"]) == 0
    capsys.readouterr()
    return ws


def _report_args(ws: str, junit: Path) -> list[str]:
    return ["report", "--workspace", ws, "--run", "1", "--bootstrap", "50", "--backfill-steps", "3",
            "--fail-under", "gain_retained=0.1", "--junit", str(junit)]


def _special_targets(folder: Path) -> dict[str, Path]:
    """Existing paths that are not regular files, each with how the refusal names it."""
    import os
    import socket
    import stat

    folder.mkdir()
    fifo, sock, sub, link = folder / "fifo", folder / "sock", folder / "sub", folder / "link.xml"
    os.mkfifo(fifo)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    server.close()
    sub.mkdir()
    (folder / "real.xml").write_text("<keep/>")
    link.symlink_to(folder / "real.xml")
    targets = {"a FIFO (named pipe)": fifo, "a socket": sock, "a folder": sub, "a symbolic link": link}
    if os.geteuid() == 0:  # a character device of our own (the numbers of /dev/null), never a real /dev node
        node = folder / "device"
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        targets["a device"] = node
    return targets


def test_junit_refuses_a_target_that_is_not_a_regular_file(demo_copy: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from helpers.workspace_files import table_dump

    ws = _trained(demo_copy, capsys)
    rows = table_dump(demo_copy)
    targets = _special_targets(tmp_path / "targets")
    modes = {kind: os.lstat(path).st_mode for kind, path in targets.items()}
    for kind, path in targets.items():
        code = main(_report_args(ws, path))
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert f"--junit {path}: is {kind}, not a regular file" in err, err
        assert os.lstat(path).st_mode == modes[kind]  # left as it was, not replaced by a regular file
    assert (tmp_path / "targets" / "real.xml").read_text() == "<keep/>"
    assert table_dump(demo_copy) == rows  # refused before the report: no run row, no report


def test_junit_replaces_only_an_earlier_junit_result(demo_copy: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The vectors file a model of the workspace references, a bundle or any other file at ``--junit`` is
    refused before any work and left byte for byte; an earlier JUnit result (or an empty file) is replaced."""
    from helpers.workspace_files import table_dump

    ws = _trained(demo_copy, capsys)
    vectors = tmp_path / "model.npz"
    np.savez(vectors, ids=np.array(["a", "b"]), vectors=np.eye(2, dtype=np.float32))
    assert main(["model", "add", "--workspace", ws, "--name", "refd", "--path", str(vectors)]) == 0
    notes = tmp_path / "notes.xml"
    notes.write_text('<?xml version="1.0"?>\n<notes>mine</notes>\n')
    capsys.readouterr()
    rows = table_dump(demo_copy)
    for target in (vectors, notes):
        before = target.read_bytes()
        code = main(_report_args(ws, target))
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert f"--junit {target}: exists and is not a JUnit XML file" in err, err
        assert target.read_bytes() == before
    assert table_dump(demo_copy) == rows  # refused before the report
    for earlier in ('<?xml version="1.0" encoding="utf-8"?>\n<testsuites name="x"/>\n', "",
                    '<?xml version="1.0"?>\n<?xml-stylesheet type="text/xsl" href="j.xsl"?>\n<!DOCTYPE testsuite>\n'
                    '<!-- from another tool -->\n<testsuite name="y"/>\n'):
        junit = tmp_path / "gate.xml"
        junit.write_text(earlier)
        assert main(_report_args(ws, junit)) == 0, capsys.readouterr().err
        assert ET.parse(junit).getroot().get("failures") == "0"


def test_a_check_given_twice_is_one_test_case_and_a_replaced_result_keeps_its_permissions(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import stat

    ws = _trained(demo_copy, capsys)
    junit = tmp_path / "gate.xml"
    junit.write_text("")
    os.chmod(junit, 0o640)
    args = _report_args(ws, junit) + ["--fail-under", "gain_retained=0.1", "--fail-under", "old_old_top1>=0.01",
                                      "--json"]
    assert main(args) == 0, capsys.readouterr().err
    gate = json.loads(capsys.readouterr().out)["gate"]
    names = [case.get("name") for case in ET.parse(junit).getroot().iter("testcase")]
    assert names == ["gain_retained>=0.1", "old_old_top1>=0.01"], names
    assert [check["check"] for check in gate["checks"]] == names
    assert stat.S_IMODE(os.stat(junit).st_mode) == 0o640


def _without_dac_override() -> None:
    """Run as root without the capabilities that ignore file permissions, so a read-only folder is one."""
    import ctypes
    import os

    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _file_size_limit() -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG errors instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))


@pytest.mark.parametrize(("preexec", "expect"), [
    (_without_dac_override, "cannot write in {folder} (Permission denied)"),
    (_file_size_limit, "not enough disk space in {folder} (File too large)"),
], ids=["read-only-folder", "full-disk"])
def test_a_junit_folder_that_cannot_take_the_file_fails_before_any_work(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], preexec: object, expect: str) -> None:
    import subprocess
    import sys

    from helpers.workspace_files import table_dump

    ws = _trained(demo_copy, capsys)
    rows = table_dump(demo_copy)
    folder = tmp_path / "out"
    folder.mkdir()
    if preexec is _without_dac_override:
        folder.chmod(0o555)
    junit = folder / "gate.xml"
    repo = Path(__file__).resolve().parent.parent
    try:
        proc = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *_report_args(ws, junit)], cwd=repo,
                              capture_output=True, text=True, timeout=300, preexec_fn=preexec)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"embridge: error: --junit {junit}: " + expect.format(folder=folder)), proc.stderr
    assert list(folder.iterdir()) == []  # no probe or temp file left
    assert table_dump(demo_copy) == rows  # checked before the report was built: no run row, no report


def test_a_junit_write_error_names_the_junit_path(tmp_path: Path) -> None:
    from embridge.core.errors import InputError, StoreError
    from embridge.core.report.gate import check_junit_target, write_junit

    plain = tmp_path / "plain"
    plain.write_text("a file, not a folder")
    junit = plain / "gate.xml"
    with pytest.raises(InputError, match=rf"^--junit {junit}: {plain} is a file, not a folder, so nothing can be "
                                         r"written under it$"):
        check_junit_target(junit, tmp_path / "ws")
    results = evaluate([parse_check("a=0.5")], {"a": 0.7})
    with pytest.raises(StoreError, match=rf"^--junit {junit}: cannot write in {plain} \("):
        write_junit(junit, results)
    assert plain.read_text() == "a file, not a folder"
    write_junit(tmp_path / "new" / "gate.xml", results)  # missing folders are created
    assert ET.parse(tmp_path / "new" / "gate.xml").getroot().get("failures") == "0"


def test_a_sample_number_a_whole_gallery_report_lacks_says_which_number_to_gate_instead() -> None:
    """After a full backfill new/new searches the whole gallery and the sample keys are null; a gate written
    while only a sample was embedded failed with no clue why."""
    values = {"upgraded_sample_ndcg@10": None, "ndcg@10": 0.61}
    (result,) = evaluate([parse_check("upgraded_sample_ndcg@10=0.3")], values)
    assert not result.passed
    assert result.message == ("upgraded_sample_ndcg@10: undefined in this report (new/new searched the whole gallery, "
                              "so there is no separate sample; gate on ndcg@10 instead)")
