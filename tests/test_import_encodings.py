"""What hostile-but-legal inputs import as: byte-order marks, Unicode forms, U+2028, odd id and label types.

Each of these used to import silently wrong (a lost key column, U+FEFF inside a key, two items
for one name, ``True`` as a class); here they import right, and the tiny files that used to eat
gigabytes are refused in a few megabytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from import_builders import bomb_png, header_only, npy_bytes, raw_npz
from PIL import Image

from embridge.core.errors import ImportDataError
from embridge.core.importers import import_items
from embridge.core.models.inputs import read_image
from embridge.core.models.vectors_only import VectorTable
from embridge.core.store import Workspace

REPO = Path(__file__).resolve().parent.parent
CAFE_NFC, CAFE_NFD = "caf\u00e9", "cafe\u0301"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    yield workspace
    workspace.close()


def _keys(ws: Workspace) -> list[str]:
    return [item["key"] for item in ws.items()]


def test_a_csv_saved_with_a_byte_order_mark_keeps_its_key_column(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "excel.csv").write_bytes("\ufeffkey,text,label\nk1,hello,a\nk2,world,b\n".encode())
    import_items(ws, tmp_path / "excel.csv")
    assert _keys(ws) == ["k1", "k2"]
    assert [i["metadata"] for i in ws.items()] == [{}, {}]  # no '\ufeffkey' column left over


def test_an_ids_file_with_a_byte_order_mark_and_crlf_gives_clean_keys(ws: Workspace, tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.ones((2, 4), np.float32))
    (tmp_path / "ids.txt").write_bytes("\ufeffa\r\nb\r\n\r\n".encode())
    import_items(ws, tmp_path / "v.npy", ids_path=tmp_path / "ids.txt")
    assert _keys(ws) == ["a", "b"]


def test_u2028_inside_a_json_string_is_valid_json_and_kept(ws: Workspace, tmp_path: Path) -> None:
    text = "first\u2028second\u2029third\x85fourth"
    (tmp_path / "t.jsonl").write_text(json.dumps({"key": "a", "text": text}, ensure_ascii=False) + "\n"
                                      + json.dumps({"key": "b", "text": "plain"}) + "\n", encoding="utf-8")
    assert import_items(ws, tmp_path / "t.jsonl")["count"] == 2
    assert [i["text"] for i in ws.items()] == [text, "plain"]


def test_npz_ids_as_bytes_or_integers_become_text_keys(ws: Workspace, tmp_path: Path) -> None:
    np.savez(tmp_path / "b.npz", ids=np.array([CAFE_NFC.encode(), b"x"]), vectors=np.ones((2, 3)))
    np.savez(tmp_path / "i.npz", ids=np.array([7, 12], dtype=np.int64), vectors=np.ones((2, 3)))
    import_items(ws, tmp_path / "b.npz")
    import_items(ws, tmp_path / "i.npz")
    assert _keys(ws) == [CAFE_NFC, "x", "7", "12"]


def test_keys_are_stored_in_nfc_and_an_nfd_twin_is_the_same_item(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(f"key,text\n{CAFE_NFD},from a Mac\n", encoding="utf-8")
    import_items(ws, tmp_path / "a.csv")
    assert _keys(ws) == [CAFE_NFC]
    (tmp_path / "b.jsonl").write_text(json.dumps({"key": CAFE_NFC, "text": "again"}) + "\n", encoding="utf-8")
    with pytest.raises(ImportDataError, match=f"1 key already exists in the workspace: {CAFE_NFC}"):
        import_items(ws, tmp_path / "b.jsonl")
    np.savez(tmp_path / "m.npz", ids=np.array([CAFE_NFC]), vectors=np.ones((1, 2), np.float32))
    table = VectorTable.load(tmp_path / "m.npz")
    assert table.lookup([CAFE_NFD]).shape == (1, 2)  # an embeddings-only model finds the item either way


def test_labels_are_text_or_canonical_integers(ws: Workspace, tmp_path: Path) -> None:
    rows = [{"key": "a", "text": "x", "label": 3}, {"key": "b", "text": "x", "label": 3.0},
            {"key": "c", "text": "x", "label": "3"}, {"key": "d", "text": "x", "label": f" {CAFE_NFD} "},
            {"key": "e", "text": "x", "label": None}, {"key": "f", "text": "x", "label": ""},
            {"key": "g", "text": "x", "label": -0.0}, {"key": "h", "text": "x", "label": 10**30}]
    (tmp_path / "l.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    import_items(ws, tmp_path / "l.jsonl")
    assert [i["label"] for i in ws.items()] == ["3", "3", "3", CAFE_NFC, None, None, "0", str(10**30)]


def test_a_csv_label_written_as_an_integral_float_is_the_jsonl_integer(ws: Workspace, tmp_path: Path) -> None:
    """pandas writes an integer label column with gaps as 3.0; the JSON number 3.0 is stored as "3"."""
    (tmp_path / "q.csv").write_text("key,text,label\nq1,x,3.0\nq2,x,-2.00\nq3,x,3.5\nq4,x,v3.0\nq5,x,\n",
                                    encoding="utf-8")
    (tmp_path / "d.jsonl").write_text(json.dumps({"key": "d1", "text": "y", "label": 3.0}) + "\n", encoding="utf-8")
    import_items(ws, tmp_path / "q.csv")
    import_items(ws, tmp_path / "d.jsonl")
    assert [i["label"] for i in ws.items()] == ["3", "-2", "3.5", "v3.0", None, "3"]


def test_a_json_label_float_beyond_2_53_is_refused_not_rounded(ws: Workspace, tmp_path: Path) -> None:
    """9007199254740993.0 parses as 9007199254740992.0: storing it would change the label."""
    (tmp_path / "big.jsonl").write_text('{"key": "a", "text": "x", "label": 9007199254740993.0}\n', encoding="utf-8")
    with pytest.raises(ImportDataError, match=r"line 1: 'label': the label 9007199254740992\.0 is a number too large"):
        import_items(ws, tmp_path / "big.jsonl")
    (tmp_path / "int.jsonl").write_text('{"key": "a", "text": "x", "label": 9007199254740993}\n', encoding="utf-8")
    import_items(ws, tmp_path / "int.jsonl")  # an integer keeps every digit
    assert [i["label"] for i in ws.items()] == ["9007199254740993"]


def test_image_names_in_nfd_are_stored_in_nfc(ws: Workspace, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / CAFE_NFD).mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(root / CAFE_NFD / f"{CAFE_NFD}.png")
    import_items(ws, root)
    assert _keys(ws) == [f"{CAFE_NFC}/{CAFE_NFC}.png"] and ws.items()[0]["label"] == CAFE_NFC


def test_a_label_folder_linking_to_the_root_is_refused_before_anything_is_stored(ws: Workspace,
                                                                                tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(root / label / "0.png")
    (root / "zz-all").symlink_to(root, target_is_directory=True)
    with pytest.raises(ImportDataError, match=r"zz-all: links back to .*imgs inside the imported folder"):
        import_items(ws, root)
    assert _keys(ws) == []
    (root / "zz-all").unlink()
    assert import_items(ws, root)["count"] == 2  # once the loop is gone, each image once


def test_a_bomb_already_in_a_workspace_is_refused_at_embed_time_before_decoding(tmp_path: Path) -> None:
    bomb = bomb_png(tmp_path / "b.png", 7000, 7000)
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImportDataError, match=r"b\.png: image is 7000 high x 7000 wide \(49000000 pixels\), over the limit"):
        read_image(bomb)


def _peak_rss_kib(argv: list[str], tmp: Path) -> tuple[int, str]:
    """Run ``embridge argv`` in a fresh process; its peak resident memory (KiB) and error output."""
    # VmHWM is this process's own peak; ru_maxrss would include the forked copy of pytest
    script = ("import re, sys\nfrom embridge.core.cli.main import main\ncode = main(sys.argv[1:])\n"
              "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
              "print(hwm, code)")
    proc = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HOME": str(tmp)})
    rss, code = proc.stdout.split()
    assert code == "1", proc.stderr
    return int(rss), proc.stderr


def test_tiny_files_claiming_huge_sizes_are_refused_in_little_memory(tmp_path: Path) -> None:
    """A 358-byte .npz of zero-byte ids claiming 3e8 rows took 4.6 GB; a 390 kB PNG decodes to 400 MB."""
    ws = tmp_path / "ws"
    Workspace.create(ws).close()
    npz = raw_npz(tmp_path / "ids.npz", {"ids.npy": header_only((300_000_000,), "<U0"),
                                         "vectors.npy": header_only((2, 0), "<f4")})
    npz2 = raw_npz(tmp_path / "ids2.npz", {"ids.npy": header_only((300_000_000,), "<U0"),
                                           "vectors.npy": npy_bytes(np.ones((2, 4), np.float32))})
    bomb = bomb_png(tmp_path / "imgs" / "cat" / "b.png", 20_000, 20_000)
    assert npz.stat().st_size < 1000 and npz2.stat().st_size < 1000 and bomb.stat().st_size < 1_000_000
    for path, message in ((npz, "no values per vector"), (npz2, "2 vectors but 300000000 ids"),
                          (tmp_path / "imgs", "b.png: image is 20000 high x 20000 wide (400000000 pixels), over the limit of 40000000")):
        rss, err = _peak_rss_kib(["import", "-w", str(ws), "--path", str(path)], tmp_path)
        assert message in err
        assert rss < 400_000, f"{path}: {rss} KiB"



def test_checking_a_large_image_folder_reports_progress_and_can_be_cancelled(ws: Workspace, tmp_path: Path) -> None:
    from embridge.core.errors import Cancelled

    root = tmp_path / "imgs"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(70):
            Image.fromarray(np.full((3, 3), i, np.uint8), mode="L").save(root / label / f"{i}.png")
    seen: list[tuple[int, int]] = []
    import_items(ws, root, on_progress=lambda done, total, info: seen.append((done, total)))
    assert seen[0] == (0, 140) and seen[-1] == (140, 140) and len(seen) >= 3
    calls = {"n": 0}

    def stop_on_second_check() -> bool:
        calls["n"] += 1
        return calls["n"] >= 2

    with Workspace.create(tmp_path / "ws2") as other:
        with pytest.raises(Cancelled):
            import_items(other, root, should_stop=stop_on_second_check)
        assert other.items() == []
