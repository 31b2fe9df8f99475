"""Danmaku readers: exact counts on the real files, protobuf/XML agreement, safe XML, every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tam.comments.formats import (
    Comment,
    decode_dm_seg,
    discover,
    iter_fields,
    read_bilibili_protobuf,
    read_bilibili_xml,
    read_danmaku,
    read_json,
    read_source,
    read_table,
)
from tam.errors import TamError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
DANMAKU = SHARED / "realdata" / "danmaku"

# file -> (<d>/records in the file (MANIFEST), advanced modes 7/8/9 in it)
REAL = {
    "biliass-corpus/xml/18678311.xml": (5, 0), "biliass-corpus/xml/2170097.xml": (973, 77),
    "biliass-corpus/xml/527533.xml": (1200, 1), "commentcorelibrary/bilibili.xml": (331, 267),
    "commentcorelibrary/boss.xml": (1000, 63), "commentcorelibrary/comment.xml": (1386, 0),
    "commentcorelibrary/extended.xml": (6343, 6343), "commentcorelibrary/mikunoshoushitsu.xml": (2674, 1563),
    "commentcorelibrary/rokubunnoichi.xml": (877, 876), "commentcorelibrary/scripting__av2775802.xml": (20, 20),
    "commentcorelibrary/scripting__crazy-night.xml": (49, 49), "commentcorelibrary/scripting__kanpai.xml": (110, 110),
    "commentcorelibrary/scripting__tsubasa.xml": (654, 634), "commentcorelibrary/test.xml": (1104, 659),
    "commentcorelibrary/test2.xml": (766, 742), "commentcorelibrary/unowen.xml": (1853, 1436),
    "commentcorelibrary/utsukushiki_mono.xml": (6258, 5188), "danmakufactory/danmaku01.xml": (1200, 0),
    "danmakuflamemaster/comments.xml": (1239, 279), "commentcorelibrary/ACFun.json": (155, 90),
    "commentcorelibrary/ac940133.json": (2146, 2145), "niconicomments/commentdata_-1.json": (51, 0),
    "niconicomments/commentdata_0.json": (954, 0), "niconicomments/commentdata_12.json": (143, 0),
    "niconicomments/commentdata_8.json": (158, 0),
}


def need_shared() -> None:
    if not DANMAKU.is_dir():
        pytest.skip("../shared/realdata/danmaku is absent")


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_file_exact_counts(name):
    need_shared()
    (v,) = read_danmaku(DANMAKU / name)
    total, advanced = REAL[name]
    assert v.skipped["advanced"] == advanced
    assert len(v.comments) + sum(v.skipped.values()) == total
    assert v.skipped["bad_record"] == 0
    assert all(c.mode not in (7, 8, 9) and c.text.strip() and c.time >= 0 for c in v.comments)


def test_real_protobuf_counts_and_agreement_with_xml():
    need_shared()
    for cid, n, n_adv in (("2170097", 973, 77), ("18678311", 5, 0)):
        pb = read_bilibili_protobuf(sorted((DANMAKU / "biliass-corpus/protobuf" / cid).glob("*.pb")))
        xml = read_bilibili_xml(DANMAKU / "biliass-corpus/xml" / f"{cid}.xml")
        assert pb.video == xml.video == cid
        assert len(pb.comments) + pb.skipped["advanced"] == n and pb.skipped["advanced"] == n_adv
        key = {c.id: (round(c.time * 1000), c.mode, c.text, c.pool, c.ctime, c.user) for c in xml.comments}
        got = {c.id: (round(c.time * 1000), c.mode, c.text, c.pool, c.ctime, c.user) for c in pb.comments}
        assert got == key


def test_real_protobuf_empty_segments():
    need_shared()
    for seg in (1, 2, 3):
        assert decode_dm_seg((DANMAKU / f"biliass-corpus/protobuf/18678311/18678311-{seg}.pb").read_bytes()) == []


@pytest.mark.parametrize("name", ["invalid__no_closing.xml", "invalid__syntax_error.xml", "invalid__xss.xml"])
def test_real_malformed_files_fail_in_one_line(name):
    need_shared()
    path = DANMAKU / "commentcorelibrary" / name
    with pytest.raises(TamError) as e:
        read_bilibili_xml(path)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_real_non_bmp_and_entities_kept():
    need_shared()
    (v,) = read_danmaku(DANMAKU / "danmakuflamemaster/comments.xml")
    assert sum(ord(ch) > 0xFFFF for c in v.comments for ch in c.text) == 12
    (v,) = read_danmaku(DANMAKU / "biliass-corpus/xml/2170097.xml")
    assert not any("&lt;" in c.text or "&gt;" in c.text for c in v.comments)


def test_discover_groups_protobuf_segments_and_reads_everything():
    need_shared()
    sources = discover([DANMAKU])
    pb = [s for s in sources if s.format == "bilibili-protobuf"]
    assert sorted(len(s.paths) for s in pb) == [1, 4]
    errors = []
    for s in sources:
        try:
            read_source(s)
        except TamError as e:
            errors.append(str(e))
    assert len(errors) == 3 and all("invalid__" in e for e in errors)


def test_xml_double_escape_newline_emoji_and_fields(tmp_path):
    p = tmp_path / "v1.xml"
    p.write_text('<?xml version="1.0" encoding="UTF-8"?><i><chatid>1</chatid>'
                 '<d p="1.5,1,25,16777215,1500000000,0,abc,42">a &amp;lt;3 &amp;amp; b</d>'
                 '<d p="2,4,25,1,1,0,u,43">x/ny 😀\x08</d>'
                 '<d p="3,7,25,1,1,0,u,44">[0,0,"1-1",4.5]</d><d p="bad">no time</d><d p="4,8,25">code</d>'
                 '<d p="5,1,25,1,1,0,u,45">  </d></i>', encoding="utf-8")
    v = read_bilibili_xml(p)
    assert v.video == "v1"
    assert v.comments == [Comment(1.5, "a <3 & b", 1, 0, "abc", 1500000000, "42"),
                          Comment(2.0, "x\ny 😀", 4, 0, "u", 1, "43")]
    assert dict(v.skipped) == {"advanced": 2, "bad_record": 1, "empty": 1}


def test_xml_entity_expansion_is_refused(tmp_path):
    p = tmp_path / "bomb.xml"
    p.write_text('<?xml version="1.0"?><!DOCTYPE i [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                 '<i><d p="1,1,25,1,1,0,u,1">&b;</d></i>')
    with pytest.raises(TamError, match="bomb.xml: refused unsafe XML"):
        read_bilibili_xml(p)
    p.write_text('<?xml version="1.0"?><!DOCTYPE i [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                 '<i><d p="1,1,25,1,1,0,u,1">&x;</d></i>')
    with pytest.raises(TamError, match="refused unsafe XML"):
        read_bilibili_xml(p)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def test_protobuf_decoder_hand_built(tmp_path):
    e1 = _field(1, 7) + _field(2, 61500) + _field(3, 5) + _field(7, "好看😀".encode()) + _field(8, 1600000000) \
        + _field(12, b"7") + _field(20, b"ignored") + _varint(21 << 3 | 5) + b"\x00\x00\x80\x3f"
    e2 = _field(1, 8) + _field(7, "零时".encode()) + _field(11, 1)  # progress 0 and mode omitted on the wire
    e3 = _field(2, 1000) + _field(3, 7) + _field(7, b"[advanced]")
    seg = _field(1, e1) + _field(1, e2) + _field(1, e3) + _field(5, b"colorful")
    (tmp_path / "99-1.pb").write_bytes(seg)
    (tmp_path / "99-2.pb").write_bytes(_field(1, _field(2, 400000) + _field(7, "后".encode())))
    v = read_bilibili_protobuf([tmp_path / "99-2.pb", tmp_path / "99-1.pb"])
    assert v.video == "99"
    assert [(c.time, c.text, c.mode, c.pool) for c in v.comments] == [
        (61.5, "好看😀", 5, 0), (0.0, "零时", 1, 1), (400.0, "后", 1, 0)]
    assert v.comments[0].id == "7" and v.comments[0].ctime == 1600000000 and v.skipped["advanced"] == 1
    assert [n for n, _, _ in iter_fields(seg)] == [1, 1, 1, 5]
    (tmp_path / "bad-0.pb").write_bytes(seg[:-3])
    with pytest.raises(TamError, match="bad-0.pb: not a Bilibili DmSegMobileReply"):
        read_bilibili_protobuf([tmp_path / "bad-0.pb"])


def test_json_formats(tmp_path):
    (tmp_path / "ac.json").write_text(json.dumps([{"c": "12.5,16777215,1,25,u,1600000000,9", "m": "好 &amp; 坏"},
                                                  {"c": "3,1,7,25,u,1", "m": "{}"}, {"c": "x", "m": "bad"}]))
    v = read_json(tmp_path / "ac.json")
    assert v.format == "acfun" and [(c.time, c.text) for c in v.comments] == [(12.5, "好 & 坏")]
    assert dict(v.skipped) == {"advanced": 1, "bad_record": 1}
    nico = [{"thread": {"x": 1}}, {"chat": {"vpos": 150, "content": "草", "mail": "184 ue"}},
            {"chat": {"vpos": 20, "content": "うぽつ", "mail": "shita"}}]
    (tmp_path / "nico.json").write_text(json.dumps(nico, ensure_ascii=False))
    v = read_json(tmp_path / "nico.json")
    assert v.format == "niconico" and [(c.time, c.text, c.mode) for c in v.comments] == [(1.5, "草", 5),
                                                                                      (0.2, "うぽつ", 4)]
    v1 = {"data": {"threads": [{"comments": [{"vposMs": 2500, "body": "すごい", "commands": ["big"]}]}]}}
    (tmp_path / "nv1.json").write_text(json.dumps(v1, ensure_ascii=False))
    assert [(c.time, c.text) for c in read_json(tmp_path / "nv1.json").comments] == [(2.5, "すごい")]
    (tmp_path / "odd.json").write_text('{"foo": 1}')
    with pytest.raises(TamError, match="odd.json"):
        read_json(tmp_path / "odd.json")
    (tmp_path / "broken.json").write_text('[{"c": ')
    with pytest.raises(TamError, match="broken.json: not valid JSON"):
        read_json(tmp_path / "broken.json")


def test_csv_and_jsonl_tables(tmp_path):
    (tmp_path / "t.csv").write_text("video,time,text\na,1.5,你好\nb,2,\"逗号,引号\"\na,x,坏\n", encoding="utf-8")
    vs = read_table(tmp_path / "t.csv")
    assert [(v.video, [(c.time, c.text) for c in v.comments]) for v in vs] == [("a", [(1.5, "你好")]),
                                                                              ("b", [(2.0, "逗号,引号")])]
    assert vs[0].skipped["bad_record"] == 1
    (tmp_path / "t.jsonl").write_text('{"video": "v", "time": 3, "text": "哈哈"}\n\n{"video": "v", "time": 1, '
                                      '"text": "嗯", "mode": 8}\n', encoding="utf-8")
    (v,) = read_table(tmp_path / "t.jsonl")
    assert [(c.time, c.text) for c in v.comments] == [(3.0, "哈哈")] and v.skipped["advanced"] == 1
    (tmp_path / "bad.csv").write_text("vid,t,text\n1,2,3\n")
    with pytest.raises(TamError, match="bad.csv: CSV header lacks"):
        read_table(tmp_path / "bad.csv")
    with pytest.raises(TamError, match="no such file"):
        discover([tmp_path / "missing"])


# ---------------------------------------------------------------- limits, the two XML paths, fuzzing

def test_read_limits_drop_and_count(tmp_path):
    from tam.comments.formats import ReadLimits

    p = tmp_path / "big.xml"
    huge = "长" * 5000
    p.write_text(f'<i><d p="1,1,25,1,1,0,u,1">正常</d><d p="2,1,25,1,1,0,u,2">{huge}</d>'
                 f'<d p="3,8,25,1,1,0,u,3">{huge}</d><d p="4,1,25,1,1,0,u,4">又一个</d>'
                 '<d p="5,1,25,1,1,0,u,5">第三个</d></i>', encoding="utf-8")
    for plain in (True, False):
        from tam.comments import formats

        old = formats._PLAIN_XML_MAX_BYTES
        formats._PLAIN_XML_MAX_BYTES = old if plain else 0  # the streaming reader too
        try:
            v = read_bilibili_xml(p, ReadLimits(max_comment_chars=100, max_comments=2))
        finally:
            formats._PLAIN_XML_MAX_BYTES = old
        assert [c.text for c in v.comments] == ["正常", "又一个"]
        assert dict(v.skipped) == {"too_long": 1, "advanced": 1, "over_limit": 1}
    v = read_bilibili_xml(p)  # default limits: 1000 characters, 5 million comments
    assert len(v.comments) == 3 and dict(v.skipped) == {"too_long": 1, "advanced": 1}
    with pytest.raises(TamError, match=r"big.xml: .* MB is over the 0.001 MB limit per file"):
        read_bilibili_xml(p, ReadLimits(max_file_mb=0.001))
    t = tmp_path / "t.csv"
    t.write_text("video,time,text\na,1,短\na,2," + "长" * 50 + "\n", encoding="utf-8")
    (v,) = read_table(t, ReadLimits(max_comment_chars=10))
    assert [c.text for c in v.comments] == ["短"] and dict(v.skipped) == {"too_long": 1}


EDGE_XML = [
    '<?xml version="1.0" encoding="UTF-8"?>\r\n<i>\r\n<d p="1,1,25,1,1,0,u,1">a\r\nb &amp;lt;3 &gt; &quot;</d>\r\n</i>',
    '<i><d p="1,1,25,1,1,0,u,1">外<d p="2,1,25,1,1,0,u,2">内</d>尾</d><d p="3,1,25,1,1,0,u,3"><b/>x</d></i>',
    '<i xmlns="urn:x"><d p="1,1,25,1,1,0,u,1">命名空间</d></i>',
    '<i><d p="1,1,25,1,1,0,u,1"><![CDATA[<b>]]>c</d><!-- <d p="9">no</d> --><d p="2,1">&#x4e2d;&#128512;</d></i>',
    "<i><d p='1,1,25,1,1,0,u,1'>single</d><d p=\"2,1\"/><d p=\"3,1\" x=\"y\">attr</d><d>nop</d></i>",
    '<?xml version="1.0" encoding="ISO-8859-1"?><i><d p="1,1">caf\xe9</d></i>',
    '<i><d p="1,1,25,1,1,0,u,1">\ttabs and /n old newline</d><dd p="2,1">not d</dd></i>',
    '<i><n>&#65;</n><d p="1,1,25,1,1,0,u,1">a&#13;b&#x4e2d;&#38;lt;&amp;#60;&#x1F600;</d>gap'
    '<d p="2,1">l\r\nn\rx</d></i>',
    '<i><d p="1,1,25,1,1,0,u,1">xmlns is only text here</d></i>',
]


@pytest.mark.parametrize("doc", EDGE_XML)
def test_plain_xml_path_equals_streaming_reader(tmp_path, doc):
    from tam.comments.formats import _xml_records

    p = tmp_path / "e.xml"
    p.write_bytes(doc.encode("latin-1") if "ISO-8859-1" in doc else doc.encode("utf-8"))
    assert _xml_records(p, 1000) == _xml_records(p, 1000, plain=False)
    assert _xml_records(p, 3) == _xml_records(p, 3, plain=False)


def test_plain_xml_path_equals_streaming_reader_on_real_files():
    need_shared()
    from tam.comments.formats import _xml_records

    for f in sorted(DANMAKU.rglob("*.xml")):
        if not f.name.startswith("invalid__"):
            assert _xml_records(f, 1000) == _xml_records(f, 1000, plain=False), f.name


def _mutants(data: bytes, seed: int, n: int) -> list[bytes]:
    import random

    rng = random.Random(seed)
    cuts = [data[:k] for k in sorted({0, 1, len(data) // 3, len(data) // 2, len(data) - 1, *rng.sample(
        range(len(data)), min(n, len(data)))})]
    flips = []
    for _ in range(n):
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        flips.append(bytes(b))
    return cuts + flips


@pytest.mark.parametrize("name", ["danmakufactory/danmaku01.xml", "commentcorelibrary/ACFun.json",
                                  "niconicomments/commentdata_12.json", "biliass-corpus/protobuf/18678311"])
def test_truncated_and_bit_flipped_real_files_give_one_line_errors(tmp_path, name):
    need_shared()
    src = DANMAKU / name
    files = sorted(src.glob("*.pb")) if src.is_dir() else [src]
    outcomes = {"parsed": 0, "refused": 0}
    for n, data in enumerate(_mutants(files[0].read_bytes(), seed=len(name), n=40)):
        folder = tmp_path / f"m{n}"
        folder.mkdir()
        target = folder / files[0].name
        target.write_bytes(data)
        try:
            videos = read_danmaku(target)
        except TamError as e:
            assert "\n" not in str(e) and str(target) in str(e), str(e)
            outcomes["refused"] += 1
        else:
            assert all(isinstance(c.text, str) and c.time >= 0 for v in videos for c in v.comments)
            outcomes["parsed"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) > 40


def test_comments_columns_read_back_exactly():
    from tam.comments.formats import Comments

    rows = [Comment(1.5, "a <3 & b", 1, 0, "abc", 1500000000, "42"),
            Comment(0.0, "x\ny 😀\ud83d", 4, 2**40, "", -(2**70), ""),  # ints out of range, a lone surrogate
            Comment(2.0, "", 2**63, -1, "用户", 0, "9" * 30)]
    cs = Comments(rows)
    assert len(cs) == 3 and cs == rows and list(cs) == rows and cs[-1] == rows[-1] and cs[1:] == rows[1:]
    assert cs.text(1) == rows[1].text and cs.time(0) == 1.5 and cs != rows[:2]
    with pytest.raises(IndexError):
        cs[3]
    bulk = Comments(rows[:1])
    bulk.extend(rows[1:])  # out-of-range ints: one at a time
    bulk.extend([])
    plain = rows[:1] + [Comment(3.0, "好 😀\ud83d", 5, 7, "u", 9, "id")] * 2
    together = Comments()
    together.extend(plain)
    assert bulk == rows and together == plain and together.text(2) == plain[2].text


def test_add_many_equals_add():
    from tam.comments.formats import ReadLimits, VideoComments

    cs = [Comment(1.0, "好", 1), Comment(2.0, "  ", 1), Comment(3.0, "x" * 20, 1), Comment(4.0, "code", 8),
          Comment(5.0, "a", 1), Comment(6.0, "b", 1), Comment(7.0, "c", 1)]
    one = VideoComments("v", "s", "f", limits=ReadLimits(max_comment_chars=10, max_comments=3))
    many = VideoComments("v", "s", "f", limits=ReadLimits(max_comment_chars=10, max_comments=3))
    for c in cs:
        one.add(c)
    many.add_many(cs[:4])
    many.add_many(cs[4:])
    assert many.comments == one.comments == [cs[0], cs[4], cs[5]] and many.skipped == one.skipped
    assert one.skipped == {"empty": 1, "too_long": 1, "advanced": 1, "over_limit": 1}


ODD_P = {  # p attributes that float/int read in their own way (all of them keep a usable time)
    "readable": [" 1.5,1,25,1,1,0,u,1", "1e3,1,25,1,1,0,u,1", "+1,+1,25,1,+1,+1,u,1", "-0,1,25,1,1,0,u,1",
                 "1,99999999999,25,1,1,0,u,1", "1,1,25,1,1,99999999999,u,1", "1,1,25,1,1e30,0,u,1",
                 "1,1,25,1,99999999999999999999,0,u,1", "1,1,25,1,9007199254740993,0,u,1", "1,1,25,1,1.9,0,u,1",
                 "1_0,1_0,25,1,1_0,0,u,1", "٣,١,25,1,1,0,u,1", "inf,1,25,1,1,0,u,1"],
    "bad": ["nan,1,25,1,1,0,u,1", "-1,1,25,1,1,0,u,1", "x,1,25,1,1,0,u,1", "1,1,25,1,nan,0,u,1", "1,x,25,1,1,0,u,1"],
    "fields": ["1,1,25,1,1,0,u,1,9", "1,1,25,1,1,0,u", "2,1", "3", ""],
}


def _odd_p_records(rng, odd: list[str]) -> str:
    texts = ["好", "  ", "", "a/nb", "&amp;lt;3", "&amp;amp;nbsp;", "长" * 12, "😀", "&#x4e2d;&#13;", "x\r\ny"]
    out = []
    for i in range(9000):
        mode = rng.choice([1, 1, 1, 4, 5, 7, 8])
        p = rng.choice(odd) if rng.random() < 0.02 else f"{i / 7:.4f},{mode},25,1,{i},0,u{i},{i}"
        out.append(f'<d p="{p}">{rng.choice(texts)}</d>')
    return "<i>" + "".join(out) + "</i>"


@pytest.mark.parametrize("odd", sorted(ODD_P))
@pytest.mark.parametrize("limits", [{}, {"max_comment_chars": 5, "max_comments": 3000}, {"max_comments": 4096}])
def test_columnwise_fast_path_equals_reading_one_record_at_a_time(tmp_path, limits, odd):
    """The fast path reads `p` and filters texts a column at a time; chunks with odd records (a `p` that
    float/int read differently, NaN, huge ints, other field counts, over-long texts) go record by record.
    Everything must equal the streaming reader + `Comment` per record: comments, counters and their order."""
    import random

    from tam.comments import formats
    from tam.comments.formats import ReadLimits

    p = tmp_path / "mixed.xml"
    p.write_text(_odd_p_records(random.Random(0), ODD_P[odd]), encoding="utf-8")
    assert formats._plain_found(p.read_bytes()) is not None  # the fast path reads it
    lim = ReadLimits(**limits)
    fast = read_bilibili_xml(p, lim)
    old = formats._PLAIN_XML_MAX_BYTES
    formats._PLAIN_XML_MAX_BYTES = 0  # the streaming reader, one Comment per record
    try:
        slow = read_bilibili_xml(p, lim)
    finally:
        formats._PLAIN_XML_MAX_BYTES = old
    assert list(fast.comments) == list(slow.comments) and len(fast.comments) > 1000
    assert [(c.time.hex(), type(c.mode), type(c.ctime)) for c in fast.comments] == [
        (c.time.hex(), type(c.mode), type(c.ctime)) for c in slow.comments]
    assert list(fast.skipped.items()) == list(slow.skipped.items())
    assert fast.skipped["advanced"] > 0 and (fast.skipped["bad_record"] > 0) == (odd != "readable")


def test_fast_path_counts_in_the_order_of_the_batched_reader(tmp_path):
    """Counters are created in the order the record-by-record reader creates them: a bad record or an
    over-long text at once, the other skips when a batch of `_ADD_BATCH` records is handed to add_many."""
    from tam.comments import formats

    batch = formats._ADD_BATCH
    for bad, adv, order in ((batch - 100, 50, ["bad_record", "advanced"]),  # advanced: counted with its batch
                            (batch + 10, batch - 5, ["advanced", "bad_record"])):
        recs = [f'<d p="{i},{7 if i == adv else 1},25,1,1,0,u,{i}">好</d>' for i in range(batch + 500)]
        recs[bad] = '<d p="x,1">bad</d>'
        (tmp_path / "o.xml").write_text("<i>" + "".join(recs) + "</i>", encoding="utf-8")
        v = read_bilibili_xml(tmp_path / "o.xml")
        assert list(v.skipped.items()) == [(k, 1) for k in order] and len(v.comments) == batch + 498
        ref = formats.VideoComments("o", "", "")  # the streaming reader, one Comment per record
        formats._add_records(ref, formats._xml_records(tmp_path / "o.xml", 1000, plain=False))
        assert list(ref.skipped.items()) == list(v.skipped.items()) and ref.comments == v.comments


def test_p_columns_equal_p_fields():
    from tam.comments.formats import _p_columns, _p_fields

    strict = [f"{i / 3},{i % 9},25,1,{1600000000 + i},{i % 2},u{i},{i}" for i in range(50)]
    for ps in (strict, [p + ",9" for p in strict], strict + ["nan,1,25,1,1,0,u,1"], strict + ["1,1,25,1,1e3,0,u,1"],
               strict + ["1,1,25,1,1,0,u,1,9"], ["1,1,25,1,1,0,u,1\n"], strict + ["1,1,25,1,0012,0,u,1"],
               strict + ["1,1,25,1,1,0,u,1,9", "1,1,25,1,1,0,u"],  # as many fields in all, not in each
               strict + ["1,1,25,1,9007199254740993,0,u,1"], strict + ["1,1,25,1," + "9" * 300 + ",0,u,1"]):
        cols, good = _p_columns(ps)
        times, modes, pools, ctimes, users, ids = cols
        want = [_p_fields(p) for p in ps]
        assert good == (None not in want)
        got = [None if m is None else (t, m, pl, int(ct), u, i) for t, m, pl, ct, u, i in zip(*cols)]
        assert got == want
