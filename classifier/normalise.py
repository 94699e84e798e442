"""First stage: turn a raw request (plain text, HTML or an e-mail) into one text
whose parts are labelled, so later stages know what the customer wrote now.

Segments: ``subject``; ``prose`` (the new message); ``code`` (code blocks, stack
traces, pasted log lines); ``quoted`` (earlier replies); ``signature`` (sign-offs
and disclaimers); ``hidden`` (HTML comments, which a person never sees but an
automated reader does). Rules choose which segments they read.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

#: Longest request body classified; the rest is cut and the cut is reported.
MAX_TEXT_CHARS = 20_000

_HTML_HINT = re.compile(r"<(?:p|br|div|span|html|body|table|td|tr|li|ul|ol|b|i|a|font|pre|code|blockquote|h[1-6])\b[^>]{0,200}>|<!--", re.I)
_BLOCK_TAGS = {"p", "br", "div", "li", "tr", "table", "pre", "blockquote", "h1", "h2", "h3",
               "h4", "h5", "h6", "ul", "ol", "hr", "section", "article", "header", "footer"}
_SKIP_TAGS = {"script", "style", "head", "title"}

# The line patterns take the leading whitespace possessively (\s*+): with a plain \s*, an
# alternative that can match whitespace too (an indent of 4, \s*regards) was tried again at
# every split of a long indent, a cost growing with the square of its length.
_QUOTE_HEADER = re.compile(
    r"^\s*+(?:On .{0,200}wrote:\s*$|Am .{0,200}schrieb.{0,100}:\s*$|El .{0,200}escribió:\s*$"
    r"|Em .{0,200}escreveu:\s*$|-{2,}\s*Original Message\s*-{2,}|-{2,}\s*Forwarded message\s*-{2,}"
    r"|From:\s.{0,200}$|-----\s*Исходное сообщение)",
    re.I)
_SIGNOFF = re.compile(
    r"^\s*+(?:--\s*$|(?:best|kind|warm)?\s*regards\b.{0,30}$|thanks(?: in advance)?[,!.]?\s*$"
    r"|thank you[,!.]?\s*$|cheers[,!.]?\s*$|sincerely[,!.]?\s*$|mit freundlichen grüßen.{0,10}$"
    r"|с уважением.{0,10}$|saludos.{0,20}$|atenciosamente.{0,10}$|pozdrawiam.{0,10}$"
    r"|sent from my \w+)", re.I)
_DISCLAIMER = re.compile(r"^\s*+(?:this (?:e-?mail|message)|confidentiality notice|disclaimer)\b.{0,80}(?:confidential|intended)", re.I)
_FENCE = re.compile(r"^\s*+(?:```|~~~)")
_CODE_LINE = re.compile(
    r"^\s*+(?:#\d+\s+[/\w{]|at\s+[\w$.<>]+\(|Stack trace:|Traceback \(most recent|PHP (?:Fatal|Warning|Notice|Parse|Deprecated)\b"
    r"|\[\d{1,2}-\w{3}-\d{4}[ T]|\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} |\d{4}[/-]\d\d[/-]\d\d[ T]\d\d:\d\d(?::\d\d)?"
    r"|\w+\.(?:php|js|py):\d+|File \"|(?<=\s{4})\S|(?<=\t)\S|<\?php|\$\w+\s*=|(?:function|class|namespace|use)\s+[\w\\]+.{0,80}[;{(]\s*$"
    r"|[{}\];]\s*$|(?:SELECT|INSERT|UPDATE|DELETE)\s.{0,200}\b(?:FROM|INTO|SET|WHERE)\b)",
)

#: any of the line patterns above: a line matching none of them (and not starting with
#: ">") in the prose part is prose, found with one regex call instead of five
_ANY_LINE_PATTERN = re.compile("|".join(f"(?{'i' if rx.flags & re.I else ''}:{rx.pattern})"
                                         for rx in (_FENCE, _QUOTE_HEADER, _SIGNOFF, _DISCLAIMER, _CODE_LINE)))


#: spaCy's tokenizer splits prefixes and suffixes one at a time, and its cost grows
#: with the square (or worse) of a whitespace-free run's length: 8,000 "<" take
#: about 10 s. Runs of symbols longer than this are cut to it (they carry nothing
#: a rule reads) ...
MAX_SYMBOL_RUN = 16
#: ... and a space is put into every other whitespace-free run at this interval.
MAX_WORD_CHARS = 256
_SYMBOL_RUN = re.compile(r"[^\w\s]{%d,}" % (MAX_SYMBOL_RUN + 1))
_LONG_WORD = re.compile(r"\S{%d,}" % (MAX_WORD_CHARS + 1))
_SURROGATE = re.compile("[\ud800-\udfff]")


#: Byte tables for defuse's pre-tests, from what ``\w``/``\s`` match in ASCII: "s" for a
#: symbol ([^\w\s]), "w" for any other non-whitespace character, " " for whitespace.
#: A text is encoded to ASCII with "?" (a symbol) for every other character, so a run
#: of symbols or of non-whitespace is never shorter in the bytes than in the text.
_SYMBOLS = bytes(0x20 if re.match(r"\s", chr(b)) else 0x77 if re.match(r"\w", chr(b)) else 0x73
                 for b in range(128)) + b"s" * 128
_NON_SPACE = _SYMBOLS.replace(b"s", b"w")


def defuse(text: str) -> str:
    """Make ``text`` safe for the tokenizer: lone surrogates become U+FFFD, long symbol
    runs are cut and long whitespace-free runs split (linear time; see MAX_WORD_CHARS)."""
    if not text.isascii():  # (a surrogate is not ASCII)
        text = _SURROGATE.sub("\ufffd", text)
    # each sub runs only on a text its pattern can match (see _SYMBOLS)
    ascii_bytes = text.encode("ascii", "replace")
    if b"s" * (MAX_SYMBOL_RUN + 1) in ascii_bytes.translate(_SYMBOLS):
        text = _SYMBOL_RUN.sub(lambda m: m.group(0)[:MAX_SYMBOL_RUN], text)
        ascii_bytes = text.encode("ascii", "replace")
    if len(text) <= MAX_WORD_CHARS or b"w" * (MAX_WORD_CHARS + 1) not in ascii_bytes.translate(_NON_SPACE):
        return text
    return _LONG_WORD.sub(lambda m: " ".join(m.group(0)[i:i + MAX_WORD_CHARS]
                                             for i in range(0, len(m.group(0)), MAX_WORD_CHARS)), text)


@dataclass
class Segment:
    kind: str
    start: int
    end: int


@dataclass
class NormalisedRequest:
    """The request as one text plus the labelled character spans of its parts."""

    text: str
    segments: list[Segment] = field(default_factory=list)
    truncated: bool = False
    original_length: int = 0
    #: kinds of secrets masked (``password``, ``license_key`` …), in order found
    masked: list[str] = field(default_factory=list)

    def parts(self, *kinds: str) -> str:
        """The text of the given segment kinds, in order, joined by newlines."""
        return "\n".join(self.text[s.start:s.end] for s in self.segments if s.kind in kinds)


class _HTMLToText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.comments: list[str] = []
        self._skip = 0
        self._quote = 0

    def handle_starttag(self, tag, attrs):  # noqa: D102
        if tag in _SKIP_TAGS:
            self._skip += 1
        if tag == "blockquote":
            self._quote += 1
        if tag in _BLOCK_TAGS:
            self.out.append("\n")

    def handle_endtag(self, tag):  # noqa: D102
        if tag in _SKIP_TAGS and self._skip:
            self._skip -= 1
        if tag == "blockquote" and self._quote:
            self._quote -= 1
        if tag in _BLOCK_TAGS:
            self.out.append("\n")

    def handle_data(self, data):  # noqa: D102
        if self._skip:
            return
        if self._quote:
            data = "\n".join("> " + ln for ln in data.split("\n"))
        self.out.append(data)

    def handle_comment(self, data):  # noqa: D102
        self.comments.append(data.strip())


def html_to_text(markup: str) -> tuple[str, list[str]]:
    """Visible text of an HTML body and the text of its comments."""
    parser = _HTMLToText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # a broken document still yields what was parsed
        pass
    text = html.unescape("".join(parser.out))
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n\n", text)
    return text.strip(), parser.comments


def _line_kinds(lines: list[str]) -> list[str]:
    kinds = ["prose"] * len(lines)
    in_fence = False
    state = "prose"  # becomes "quoted" or "signature" for the rest of the message
    for i, line in enumerate(lines):
        if state == "prose" and not in_fence and not _ANY_LINE_PATTERN.match(line) and not line.lstrip().startswith(">"):
            continue  # prose (the steps below would change nothing)
        if _FENCE.match(line):
            kinds[i] = "code"
            in_fence = not in_fence
            continue
        if in_fence:
            kinds[i] = "code"
            continue
        if state == "prose":
            if _QUOTE_HEADER.match(line):
                state = "quoted"
            elif _SIGNOFF.match(line) and _looks_like_end(lines, i):
                state = "signature"
            elif _DISCLAIMER.match(line):
                state = "signature"
        if state == "signature" and (line.lstrip().startswith(">") or _QUOTE_HEADER.match(line)):
            state = "quoted"
        if state != "prose":
            kinds[i] = state
        elif line.lstrip().startswith(">"):
            kinds[i] = "quoted"
        elif _CODE_LINE.match(line):
            kinds[i] = "code"
    return kinds


_MORE_TO_SAY = re.compile(r"^\s*+(?:p\.?\s?s\b|one more|also\b|another\b|btw\b|by the way|and\b|but\b|however\b)", re.I)


def _looks_like_end(lines: list[str], i: int) -> bool:
    """A sign-off starts the signature only if no more of the message follows it:
    no question, no "one more thing"/"P.S.", and no long line that is not a disclaimer."""
    for ln in lines[i + 1:]:
        if not ln.strip() or ln.lstrip().startswith(">"):
            continue
        if _QUOTE_HEADER.match(ln):
            break
        if _DISCLAIMER.match(ln) or re.search(r"confidential|intended recipient|vertraulich", ln, re.I):
            continue
        if ln.rstrip().endswith("?") or _MORE_TO_SAY.match(ln) or len(ln.split()) > 12:
            return False
    return True


def masked_text(text: str) -> tuple[str, list[str]]:
    """The request text as a pipeline may store it, and the kinds of secrets masked: HTML
    read as plain text (its hidden comments kept as ``<!-- … -->`` lines at the end), line
    endings unified, every secret replaced by ``[MASKED]``; nothing cut or reordered."""
    from .masking import mask_secrets

    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", " ")
    comments: list[str] = []
    if _HTML_HINT.search(text):
        text, comments = html_to_text(text)
    results = [mask_secrets(text)] + [mask_secrets(c) for c in comments]
    shown = results[0].text + "".join(f"\n<!-- {r.text} -->" for r in results[1:])
    return shown, [k for r in results for k in r.kinds]


def normalise(text: str, subject: str | None = None, *, max_chars: int = MAX_TEXT_CHARS,
              mask: bool = True) -> NormalisedRequest:
    """Split a request into labelled segments (see module doc); cut very long text.

    With ``mask`` (the default) secrets are replaced by ``[MASKED]`` right after
    the HTML is read, so no later stage ever holds them.
    """
    from .masking import mask_secrets

    original_length = len(text)
    truncated = original_length > max_chars
    if truncated:
        text = text[:max_chars]
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", " ")
    comments: list[str] = []
    if _HTML_HINT.search(text):
        text, comments = html_to_text(text)
    subject = (subject or "").replace("\r\n", "\n").replace("\r", "\n").replace("\x00", " ").strip()[:1000]
    masked: list[str] = []
    if mask:
        for name in ("text", "subject"):
            result = mask_secrets(text if name == "text" else subject)
            masked += result.kinds
            if name == "text":
                text = result.text
            else:
                subject = result.text
        results = [mask_secrets(c) for c in comments]
        comments = [r.text for r in results]
        masked += [k for r in results for k in r.kinds]
    text, subject, comments = defuse(text), defuse(subject), [defuse(c) for c in comments]
    pieces: list[tuple[str, str]] = []
    if subject:
        pieces.append(("subject", subject))
    lines = text.split("\n")
    for line, kind in zip(lines, _line_kinds(lines)):
        if pieces and pieces[-1][0] == kind:
            pieces[-1] = (kind, pieces[-1][1] + "\n" + line)
        else:
            pieces.append((kind, line))
    for comment in comments:
        pieces.append(("hidden", comment))
    out: list[str] = []
    segments: list[Segment] = []
    pos = 0
    for kind, piece in pieces:
        if not piece.strip():
            continue
        if out:
            out.append("\n")
            pos += 1
        segments.append(Segment(kind, pos, pos + len(piece)))
        out.append(piece)
        pos += len(piece)
    return NormalisedRequest("".join(out), segments, truncated, original_length, masked)
