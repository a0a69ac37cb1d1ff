"""Hostile mail against the parser (hypothesis): random and mangled MIME.

Properties: ``parse_mail`` never raises; what it returns is safe to store and show (no NUL
in any text, Message-IDs in their ``<...>`` form, bounded lists) and its HTML is sanitised
(no script, style, frame or form, no event handler, no remote source, every link absolute
http(s) or mailto with rel=noopener); an input with defects is flagged malformed and kept
whole. The long run: CTI_FUZZ_EXAMPLES=N (docs/hostile-input.md).
"""
from __future__ import annotations

import os
from html.parser import HTMLParser

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mail.parse import MAX_REFS, parse_mail
from mail.sanitize import sanitize_html

_LONG = int(os.environ.get("CTI_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_LONG or 200, deadline=None, derandomize=not _LONG, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FORBIDDEN_TAGS = {"script", "style", "iframe", "frame", "object", "embed", "form", "input", "link", "meta",
                  "base", "svg", "math", "button", "textarea", "select", "video", "audio", "source"}

HOSTILE_HTML = [
    "<script>alert(1)</script>", "<SCRIPT SRC=//e.test/x.js></SCRIPT>", "<img src=x onerror=alert(1)>",
    '<img src="https://track.test/p.gif?u=1">', "<img src='//e.test/p'>", '<img srcset="https://e.test/a 1x">',
    '<a href="javascript:alert(1)">a</a>', '<a href="jav&#x09;ascript:alert(1)">a</a>',
    '<a href="data:text/html,<script>alert(1)</script>">d</a>', '<a href="https://ok.test" target=_blank>ok</a>',
    "<style>@import url(https://e.test/c.css)</style>", '<div style="background:url(https://e.test)">',
    "<iframe src=https://e.test></iframe>", "<svg onload=alert(1)><circle/></svg>", "<math><mi>x</mi></math>",
    "<form action=https://e.test><input name=p></form>", '<meta http-equiv="refresh" content="0;url=https://e.test">',
    "<base href=https://e.test/>", "<link rel=stylesheet href=https://e.test/s.css>", "<!--<script>x</script>-->",
    "<table background=https://e.test/b.png><tr><td>t</td></tr></table>", "<p>text &amp; more</p>", "</div></p><",
    "<video poster=https://e.test/p.png src=https://e.test/v.mp4>", "<object data=https://e.test/x.swf>",
    '<a href=" https://ok.test">sp</a>', "<img src=cid:part1@x>", "<![CDATA[<script>x</script>]]>",
]


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"tag {tag}")
        names = {k for k, _ in attrs}
        for k, v in attrs:
            v = (v or "").strip().lower()
            if k.startswith("on") or k in ("style", "srcset", "background", "poster", "action", "formaction"):
                self.problems.append(f"attribute {k}")
            if k == "src" and not v.startswith("cid:"):
                self.problems.append(f"src {v[:40]}")
            if k == "href" and not v.startswith(("http://", "https://", "mailto:")):
                self.problems.append(f"href {v[:40]}")
        if tag == "a" and "href" in names:
            rel = dict(attrs).get("rel") or ""
            if "noopener" not in rel:
                self.problems.append("link without noopener")


def html_problems(html: str) -> list[str]:
    audit = _Audit()
    audit.feed(html)
    audit.close()
    return audit.problems


def assert_safe(p) -> None:
    for text in (p.subject, p.text or "", p.html or "", p.from_addr, p.from_name or "", *p.to_addrs, *p.defects):
        assert "\x00" not in text
    for mid in (p.message_id, p.in_reply_to, *p.references):
        if mid is not None:
            assert mid.startswith("<") and mid.endswith(">") and " " not in mid and len(mid) <= 252
    assert len(p.references) <= MAX_REFS and len(p.defects) <= 50
    assert p.subject and len(p.subject) <= 500
    assert p.malformed == bool(p.defects)
    if p.html is not None:
        assert html_problems(p.html) == [], p.html
    for a in p.attachments:
        assert a.filename is None or ("/" not in a.filename and "\x00" not in a.filename)


# -- building hostile MIME --------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
_token = st.sampled_from(["text/plain", "text/html", "multipart/mixed", "multipart/alternative", "message/rfc822",
                          "application/pdf", "image/png", "text/x-unknown", "multipart/", "", "text/html;;;"])
_charset = st.sampled_from(["utf-8", "iso-8859-1", "x-no-such", "utf-7", "", "\"utf-8", "unicode-1-1-utf-7"])
_cte = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bogus", ""])
_header_name = st.sampled_from(["From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "Date",
                                "Reply-To", "Content-Disposition", "X-Junk", "Sender"])


@st.composite
def header_values(draw) -> str:
    return draw(st.one_of(
        _text,
        st.sampled_from(["<a@b>", "<<>>", "<a b@c>", "<" + "x" * 300 + "@y>", "=?utf-8?b?!!!?=", "=?x-no?q?a?=",
                         "\"unterminated <a@b", "a@b, ,,, <c@d>", "Ada <ada@example.com>", "@@@", "<>",
                         "Mon, 99 Foo 2026 99:99:99 +9999", "group: a@b, c@d;", "=?utf-8?q?=00nul?="]),
        st.lists(st.sampled_from(["<a@b>", "<c@d>", "junk", "<e@f>"]), max_size=80).map(" ".join),
    ))


@st.composite
def part(draw, depth: int = 0) -> bytes:
    ctype = draw(_token)
    boundary = draw(st.sampled_from(["b1", "b2", "", "--", "b1 b2", "x" * 80]))
    lines = [f"Content-Type: {ctype}; charset={draw(_charset)}; boundary=\"{boundary}\"",
             f"Content-Transfer-Encoding: {draw(_cte)}"]
    if draw(st.booleans()):
        lines.append(f"Content-Disposition: {draw(st.sampled_from(['attachment', 'inline', 'attachment; filename=../x', 'junk;;']))}")
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    if ctype.startswith("multipart") and depth < 3:
        children = draw(st.lists(part(depth + 1), max_size=3))
        body = b"".join(f"--{boundary}\r\n".encode() + c + b"\r\n" for c in children)
        if draw(st.booleans()):
            body += f"--{boundary}--\r\n".encode()
    else:
        body = draw(st.one_of(
            st.lists(st.sampled_from(HOSTILE_HTML), max_size=6).map(lambda xs: "".join(xs).encode()),
            _text.map(lambda s: s.encode("utf-8", "surrogateescape")),
            st.binary(max_size=120),
            st.sampled_from([b"=XX=\r\n=", b"!!!!not base64!!!", b"begin 644 x\r\n`\r\nend\r\n"]),
        ))
    return head + b"\r\n\r\n" + body


@st.composite
def messages(draw) -> bytes:
    headers = draw(st.lists(st.tuples(_header_name, header_values()), max_size=12))
    head = "\r\n".join(f"{k}: {v}" for k, v in headers).encode("utf-8", "surrogateescape")
    return head + b"\r\n" + draw(part())


@st.composite
def mangled(draw) -> bytes:
    data = bytearray(draw(messages()))
    for _ in range(draw(st.integers(0, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 20))]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\x00", b"--b1\r\n", b"<script>", b"=?",
                                                b"Content-Type: multipart/mixed; boundary=b1\r\n"]))
        else:
            del data[at:]
    return bytes(data)


# -- properties -------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000))
@example(b"")
@example(b"\x00" * 100)
@example(b"From: \r\n\r\n")
@example(b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n")
def test_random_bytes_never_raise_and_come_out_safe(raw: bytes):
    assert_safe(parse_mail(raw))


@FUZZ
@given(messages())
def test_random_mime_never_raises_and_comes_out_safe(raw: bytes):
    p = parse_mail(raw)
    assert_safe(p)
    assert p.raw == raw


@FUZZ
@given(mangled())
def test_mangled_mime_never_raises_and_comes_out_safe(raw: bytes):
    assert_safe(parse_mail(raw))


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(HOSTILE_HTML), _text), max_size=12).map("".join))
def test_sanitised_html_holds_no_script_handler_or_remote_content(html: str):
    out = sanitize_html(html)
    assert html_problems(out) == [], out
    assert sanitize_html(out) == out or html_problems(sanitize_html(out)) == []
