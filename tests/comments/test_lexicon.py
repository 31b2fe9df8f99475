"""Lexicon loader: the real DUTIR xlsx, a CSV with the same columns, a plain word list."""

from __future__ import annotations

from pathlib import Path

import pytest

from tam.comments.lexicon import MAJOR_CATEGORIES, MINOR_TO_MAJOR, Lexicon, LexiconEntry, load_lexicon
from tam.errors import TamError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
DUTIR = SHARED / "realdata" / "lexicon" / "dutir" / "情感词汇本体.stxupengyu.xlsx"


@pytest.fixture(scope="module")
def dutir() -> Lexicon:
    if not DUTIR.is_file():
        pytest.skip("../shared/realdata/lexicon is absent")
    return load_lexicon(DUTIR)


def test_categories_21_minor_to_7_major():
    assert len(MAJOR_CATEGORIES) == 7 and len(MINOR_TO_MAJOR) == 21
    assert MINOR_TO_MAJOR["PC"] == "惊" and MINOR_TO_MAJOR["PF"] == "哀" and MINOR_TO_MAJOR["NN"] == "恶"


def test_real_dutir_xlsx(dutir):
    assert sum(len(s) for s in dutir.entries.values()) == 27466  # every row, duplicated words keep all senses
    assert len(dutir) == 27466 - sum(len(s) - 1 for s in dutir.entries.values())
    assert sum(len(s) > 1 for s in dutir.entries.values()) >= 110
    assert dutir.primary("脏乱") == LexiconEntry("脏乱", "adj", 1, 1, "NN", 7, 2)
    assert dutir.primary("脏乱").major == "恶"
    cats = {e.category for s in dutir.entries.values() for e in s}
    assert cats == set(MINOR_TO_MAJOR)  # 'PH ' with a stray space was folded into PH
    assert all(e.polarity in (None, 0, 1, 2, 3) for s in dutir.entries.values() for e in s)
    assert dutir.issues["bad aux_category"] == 2 and dutir.issues["bad polarity"] == 1
    assert sum(e.aux_category is not None for s in dutir.entries.values() for e in s) == 3922


def test_csv_with_same_columns(tmp_path):
    p = tmp_path / "lex.csv"
    p.write_text("词语,词性种类,词义数,词义序号,情感分类,强度,极性,辅助情感分类,强度,极性\n"
                 "开心,adj,1,1,PA ,5,1,,,\n开心,adj,2,2,PH,3,1,,,\n讨厌,verb,1,1,ND,7,2,NE,5,2\n"
                 "奇怪,adj,1,1,XX,5,9,,,\n,,,,,,,,,\n", encoding="utf-8")
    lex = load_lexicon(p)
    assert len(lex) == 3 and [e.category for e in lex.entries["开心"]] == ["PA", "PH"]
    assert lex.primary("讨厌") == LexiconEntry("讨厌", "verb", 1, 1, "ND", 7, 2, "NE", 5, 2)
    assert lex.primary("奇怪").category is None and lex.issues == {"bad category": 1, "bad polarity": 1}
    q = tmp_path / "en.csv"
    q.write_text("word,category,polarity\n感动,PA,1\n", encoding="utf-8")
    assert load_lexicon(q).primary("感动").major == "乐"


def test_plain_word_list(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("# a small lexicon\n开心\n  难过 \n\n开心\n", encoding="utf-8")
    lex = load_lexicon(p)
    assert lex.words == {"开心", "难过"} and "难过" in lex and lex.primary("开心").category is None


def test_bad_lexicon_files(tmp_path):
    with pytest.raises(TamError, match="lexicon file not found"):
        load_lexicon(tmp_path / "nope.xlsx")
    (tmp_path / "x.xlsx").write_bytes(b"not a zip")
    with pytest.raises(TamError, match="x.xlsx: not a readable .xlsx"):
        load_lexicon(tmp_path / "x.xlsx")
    (tmp_path / "h.csv").write_text("a,b\n1,2\n")
    with pytest.raises(TamError, match="no 词语/word column"):
        load_lexicon(tmp_path / "h.csv")
    (tmp_path / "e.txt").write_text("\n# nothing\n")
    with pytest.raises(TamError, match="has no words"):
        load_lexicon(tmp_path / "e.txt")


def test_direct_xlsx_reader_equals_openpyxl(tmp_path):
    import datetime

    import openpyxl

    from tam.comments.lexicon import _xlsx_rows, _xlsx_rows_direct, _xlsx_rows_openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["词语", "词性种类", "词义数", "情感分类", "强度"])
    ws.append(["开心", "adj", 1, "PA ", 5])
    ws.append(["难过", None, 1.5, "NB", None])
    ws.append([None, None, None, None, None])
    ws.append(["&<>\"'", "noun", 2, "NN", 7])
    wb.save(tmp_path / "plain.xlsx")
    assert _xlsx_rows_direct(tmp_path / "plain.xlsx") == _xlsx_rows_openpyxl(tmp_path / "plain.xlsx")
    ws.append(["日期", "noun", datetime.date(2020, 1, 2), "PA", 1])  # a date: the direct reader steps aside
    wb.save(tmp_path / "dated.xlsx")
    with pytest.raises(ValueError):
        _xlsx_rows_direct(tmp_path / "dated.xlsx")
    assert _xlsx_rows(tmp_path / "dated.xlsx") == _xlsx_rows_openpyxl(tmp_path / "dated.xlsx")


@pytest.mark.slow
def test_direct_xlsx_reader_equals_openpyxl_on_dutir():
    from tam.comments.lexicon import _xlsx_rows_direct, _xlsx_rows_openpyxl

    if not DUTIR.is_file():
        pytest.skip("../shared/realdata/lexicon is absent")
    assert _xlsx_rows_direct(DUTIR) == _xlsx_rows_openpyxl(DUTIR)


def test_plain_sheet_reader_equals_the_element_reader(monkeypatch):
    from tam.comments import lexicon

    sheet = (b'<worksheet><sheetData><row r="1" spans="1:3"><c r="A1" t="s"><v>0</v></c><c r="C1" s="1"><v>2.5</v></c>'
             b'</row><row r="2"/><row r="3"><c r="B3" t="b"><v>1</v></c><c r="D3" t="str"><v>x y</v></c>'
             b'<c r="E3" t="e"><v>#N/A</v></c><c r="F3"><v></v></c><c r="G3" s="2"/><c r="AA3"><v>7</v></c></row>'
             b'</sheetData></worksheet>')
    strings = ["词"]
    plain = lexicon._plain_sheet_rows(sheet, strings)
    assert plain is not None and len(plain) == 3 and plain[0][:3] == ("词", None, 2.5) and plain[1] == (None,) * 27
    assert plain[2][1:7] == (True, None, "x y", "#N/A", None, None) and plain[2][26] == 7
    for odd in (b'<c r="A1" t="inlineStr"><is><t>a</t></is></c>', b'<c r="A1"><f>1+1</f><v>2</v></c>',
                b'<c r="A1" t="str"><v>a &amp; b</v></c>', b"<x:c/>"):
        assert lexicon._plain_sheet_rows(b'<sheetData><row r="1">' + odd + b"</row></sheetData>", strings) is None
    assert lexicon._plain_sheet_rows(b'<sheetData><row r="1"><c r="A1"><v>1</v></c></sheetData>', strings) is None
    if DUTIR.is_file():  # the real workbook: the same rows as the element reader
        rows = lexicon._xlsx_rows_direct(DUTIR)
        monkeypatch.setattr(lexicon, "_plain_sheet_rows", lambda *a: None)
        assert rows == lexicon._xlsx_rows_direct(DUTIR)
