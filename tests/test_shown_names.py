"""Keys and names as one-line messages show them: unseen characters escaped, other scripts untouched."""

from __future__ import annotations

import pytest

from embridge.core.formatting import shown_name


@pytest.mark.parametrize(("name", "shown"), [
    ("q1\u200b", "q1\\u200b"),  # a zero-width space
    ("a\u00a0b", "a\\u00a0b"),  # a no-break space reads as a space
    ("a\u3164b", "a\\u3164b"),  # a blank-looking letter
    ("a\U000e0001b", "a\\U000e0001b"),  # beyond U+FFFF: eight digits ('\\ue0001' read as '\\ue000' then '1')
    ("\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F",  # England's flag: tags kept
     "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"),
    ("#\ufe0f\u20e3", "#\ufe0f\u20e3"), ("\u2764\ufe0f", "\u2764\ufe0f"),  # a keycap and an emoji presentation
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),  # ZWNJ
    ("\u0915\u094d\u200d\u0937", "\u0915\u094d\u200d\u0937"), ("\u6587\u66f8", "\u6587\u66f8"),
])
def test_unseen_characters_are_escaped_and_scripts_kept(name: str, shown: str) -> None:
    assert shown_name(name) == shown


def test_a_long_name_is_cut_before_it_is_escaped() -> None:
    """The cut was applied to the escaped text and could end inside an escape ('\\u0…')."""
    assert shown_name("x" * 57 + "\u00a0" * 30) == "x" * 57 + "\\u00a0" * 3 + "… (87 characters)"
    assert shown_name("a" + "\u200b" * 100).endswith("\\u200b… (101 characters)")
