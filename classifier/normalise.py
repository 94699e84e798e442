"""First stage: turn a raw request (plain text, HTML or an e-mail) into one text
whose parts are labelled, so later stages know what the customer wrote now.

Segments: ``subject``; ``prose`` (the new message); ``heading`` (headings and the
labels of issue templates: "## Expected behavior", "**Steps to reproduce**",
"Actual Results:" on a line of their own); ``code`` (fenced blocks, inline code, stack
traces, log lines, shell sessions and commands, configuration, Markdown tables);
``quoted`` (earlier replies, forum quotes, the support side of a chat transcript);
``forwarded`` (a message forwarded under a cover note of a few words: the request
itself, read wherever prose is); ``signature`` (sign-offs and disclaimers); ``hidden``
(HTML comments, which a person never sees but an automated reader does). Rules choose
which segments they read.

Markdown is read with markdown-it-py (fences and their language tag, headings,
tables); the rest is read line by line. The words that mark a quoted reply, a sign-off, a
disclaimer or the support side of a chat are data: ``segments:`` in rules/segments.yaml
and in each language pack, which a :class:`Normaliser` puts into its line patterns.
"""
from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from pathlib import Path

from markdown_it import MarkdownIt

from .locations import ENV_RULES
from .rules import SegmentWords, load_segment_words

#: Longest request body classified; the rest is cut and the cut is reported.
MAX_TEXT_CHARS = 20_000
#: A forwarded message under a cover note of at most this many words is the request itself
#: (segment ``forwarded``, read wherever prose is): "FYI, see below", "our client wrote this, can you help?"
COVER_NOTE_WORDS = 40

_HTML_HINT = re.compile(r"<(?:p|br|div|span|html|body|table|td|tr|li|ul|ol|b|i|a|font|pre|code|blockquote|h[1-6])\b[^>]{0,200}>|<!--", re.I)
_BLOCK_TAGS = {"p", "br", "div", "li", "tr", "table", "pre", "blockquote", "h1", "h2", "h3",
               "h4", "h5", "h6", "ul", "ol", "hr", "section", "article", "header", "footer"}
_SKIP_TAGS = {"script", "style", "head", "title"}

# The line patterns take the leading whitespace possessively (\s*+): with a plain \s*, an
# alternative that can match whitespace too (an indent of 4, \s*regards) was tried again at
# every split of a long indent, a cost growing with the square of its length. The patterns
# made of the rules' words are built by Normaliser, below, the same way.
#: the start and end of a forum quote: "[quote]", "[quote="Anna"]", "[/quote]"
_BBCODE_QUOTE = re.compile(r"\[(/?)quote\b[^\]\n]{0,100}\]", re.I)
#: a field of an e-mail header: "From: …", "Date: …", "Betreff: …"
_HEADER_FIELD = re.compile(r"^\s*+[^\W\d_][\w .-]{0,30}:\s")
#: a line of a chat transcript said by anyone ("[10:43] Anna: …"), which ends the support side's turn
_ANY_SPEAKER = re.compile(r"^\s*+(?:\[[\d:. ]{3,12}\]|\d{1,2}:\d\d(?::\d\d)?)\s*[^:\n]{1,40}:\s|^\s*+[\w .()-]{1,30}:\s")
#: a heading on a line of its own: Markdown "## …", or a short bold line, or a short label
#: ending in a colon ("Steps to Reproduce:", "Actual Results:")
_LABEL_LINE = re.compile(
    r"^\s*+(?:#{1,6}[ \t]+[^\n]{1,80}?|(?:\*\*|__)[^*_\n]{1,60}(?:\*\*|__)[ \t]*:?"
    r"|(?:\*\*|__)?[^\W\d_][^\W_]*(?:[ /-][^\W\d_][^\W_]*){0,3}[ \t]*:(?:\*\*|__)?)[ \t]*$")
#: inline code in a line of prose: `crm.item.list`, ``docker compose up``
_INLINE_CODE = re.compile(r"(`{1,2})([^`\n]{1,200}?)\1")
#: inline code that is rather a name in the interface: `Save`, `CRM > Deals`
_UI_NAME = re.compile(r"[^\W\d_][\w\s]{0,40}(?:[>→»][\w\s]{1,40})+|(?:[A-ZА-Я][\w-]*)(?: [A-ZА-Я][\w-]*){0,2}")
#: what suggests a text is Markdown: a fence, an ATX heading, a table row
_MARKDOWN_HINT = re.compile(r"^ {0,3}(?:```|~~~|#{1,6} |\|[^\n]*\|[ \t]*$)", re.M)
#: fence language tags whose content is prose to read, not code
_PROSE_FENCES = {"text", "txt", "plain", "plaintext", "markdown", "md"}
_FENCE = re.compile(r"^\s*+(?:```|~~~)")
_CODE_LINE = re.compile(
    r"^\s*+(?:#\d+\s+[/\w{]|at\s+[\w$.<>]+\(|Stack trace:|Traceback \(most recent|PHP (?:Fatal|Warning|Notice|Parse|Deprecated)\b"
    r"|\[\d{1,2}-\w{3}-\d{4}[ T]|\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} |\d{4}[/-]\d\d[/-]\d\d[ T]\d\d:\d\d(?::\d\d)?"
    r"|\w+\.(?:php|js|py):\d+|File \"|(?<=\s{4})\S|(?<=\t)\S|<\?php|\$\w+\s*=|(?:function|class|namespace|use)\s+[\w\\]+.{0,80}[;{(]\s*$"
    r"|[{}\];]\s*$|(?:SELECT|INSERT|UPDATE|DELETE)\s.{0,200}\b(?:FROM|INTO|SET|WHERE)\b"
    # a shell prompt: "$ ls", "root@srv:~# ls", "PS C:\\> dir"
    r"|(?:\$|[\w.-]+@[\w.-]+(?::[^\s$#]*)?[$#]|PS [A-Za-z]:\\[^>\n]*>)[ \t]+\S"
    # a command typed without a prompt, in lower case as it is typed: "docker compose up -d", "php -v"
    r"|(?:sudo[ \t]+)?(?:docker(?:-compose)?|git|npm|npx|yarn|composer|php|curl|wget|apt(?:-get)?|yum|dnf|systemctl"
    r"|kubectl|pip3?|python3?|node|mysql(?:dump)?|psql|chmod|chown|tar|unzip|crontab)[ \t]+(?:-{1,2}\w|[./~$]"
    r"|(?:run|build|exec|compose|up|down|pull|push|clone|install|update|upgrade|start|stop|restart|status|logs|ps"
    r"|init|require|checkout|commit|config|reload|images|inspect)\b)"
    # an import line of Python or JavaScript
    r"|import[ \t]+[\w.{},* ]+(?:[ \t]+from[ \t]+\S+|[ \t]+as[ \t]+\w+)?;?[ \t]*$|from[ \t]+[\w.]+[ \t]+import[ \t]"
    # a Markdown table row
    r"|\|.*\|[ \t]*$)",
)

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
        if tag == "li":  # a list item keeps its bullet, so a list still reads as one
            self.out.append("- ")

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


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def _markdown_kinds(text: str, n_lines: int) -> list[str | None]:
    """Kind of each line that Markdown structure decides: fenced code (by its language
    tag), tables, headings; ``None`` for the lines it leaves to the line patterns."""
    kinds: list[str | None] = [None] * n_lines
    for token in _markdown().parse(text):
        if not token.map or token.level:
            continue
        first, last = token.map
        if token.type == "fence":
            tag = token.info.split()[0].lower() if token.info.strip() else ""
            kinds[first] = kinds[min(last, n_lines) - 1] = "code"  # the fence lines themselves
            for i in range(first + 1, min(last, n_lines) - 1):
                kinds[i] = None if tag in _PROSE_FENCES else "code"
        elif token.type == "table_open":
            for i in range(first, min(last, n_lines)):
                kinds[i] = "code"
        elif token.type == "heading_open":
            kinds[first] = "heading"
    return kinds


def _is_label(line: str) -> bool:
    """A heading-like line is a heading unless it is a long Markdown title or starts in
    lower case (chat text: "anyway:")."""
    bare = line.strip().lstrip("#").strip().strip("*_").strip()
    return bool(bare) and len(bare.split()) <= 8 and not bare[0].islower()


def _fragments(line: str, kind: str) -> list[tuple[str, str]]:
    """A line as (kind, text) pieces: inline code in prose becomes ``code``, unless it
    names something in the interface (`Save`, `CRM > Deals`)."""
    if kind not in ("prose", "forwarded") or "`" not in line:
        return [(kind, line)]
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _INLINE_CODE.finditer(line):
        if _UI_NAME.fullmatch(m.group(2).strip()):
            continue
        if m.start() > pos:
            out.append(("prose", line[pos:m.start()]))
        out.append(("code", m.group(0)))
        pos = m.end()
    if pos < len(line):
        out.append(("prose", line[pos:]))
    return out


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


# ------------------------------------------------------------------ the rules' words in the line patterns
#: How much text ``…`` stands for in a phrase, by the ``segments:`` key it is listed under:
#: a reply header's date and sender; a disclaimer's words between its opening and the word
#: that tells it; what follows a sign-off on its line (a name). Bounded, so no pattern tries
#: more than this many characters at any point of a line.
ANY_TEXT_CHARS = {"reply_headers": 200, "disclaimers": 80, "sign_offs": 30}
#: the placeholders of a phrase, with the spaces around ``…``: any text, a digit
_PLACEHOLDER = re.compile(r"(\s*(?:…|\.\.\.)\s*|#)")
_WORD_CHAR = re.compile(r"\w")


def words_pattern(words: str) -> str:
    """The regex of words as written (upper or lower case alike where compiled with re.I),
    any run of whitespace standing for the spaces between them."""
    return r"\s+".join(map(re.escape, words.split()))


def phrase_pattern(phrase: str, any_text: int) -> str:
    """The regex of a phrase of ``segments:``: its words as written, ``…`` (or ``...``) for
    up to ``any_text`` characters of any text, ``#`` for a digit. A space between a word and
    ``…`` ends the word there ("On … wrote:" does not match "Once we wrote:"); a ``…`` written
    against a word may go on with it ("pozdrawiam…" matches "Pozdrawiamy,"). The spaces
    themselves are part of the ``…``."""
    pieces = _PLACEHOLDER.split(phrase.strip())  # text, placeholder, text, …
    out: list[str] = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            out.append((r"\s+" if i and piece[:1].isspace() else "") + words_pattern(piece)
                       + (r"\s+" if i < len(pieces) - 1 and piece[-1:].isspace() else ""))
        elif piece == "#":
            out.append(r"\d")
        else:
            word_before = piece[:1].isspace() and _WORD_CHAR.match(pieces[i - 1][-1:])
            word_after = piece[-1:].isspace() and _WORD_CHAR.match(pieces[i + 1][:1])
            out.append((r"\b" if word_before else "") + ".{0,%d}" % any_text + (r"\b" if word_after else ""))
    return "".join(out)


def _either(patterns: list[str]) -> str:
    """One alternation of ``patterns``; one that matches nothing when there are none."""
    return "|".join(patterns) if patterns else "(?!)"


class Normaliser:
    """Cuts requests into labelled segments (see the module doc) with the words of one rules
    folder: the reply headers, sign-offs, disclaimers and chat speakers of its ``segments:``
    (rules/segments.yaml and the language packs; docs/rules.md tells their forms), put into
    the line patterns once, when it is made. Get one with :func:`normaliser_of` or
    :func:`normaliser_for`, which make one per set of words."""

    def __init__(self, words: SegmentWords) -> None:
        self.words = words

        def phrases(key: str) -> str:
            return _either([phrase_pattern(p.text, p.any_text or ANY_TEXT_CHARS[key]) for p in getattr(words, key)])

        def literal(key: str, whole: bool = False) -> str:
            """The words of ``key``; with ``whole``, one ending in a letter or digit ends a word."""
            return _either([words_pattern(w) + (r"\b" if whole and _WORD_CHAR.match(w[-1]) else "")
                            for w in getattr(words, key)])

        #: the line that starts a quoted earlier message: "On … wrote:", "-----Original Message-----",
        #: "From: Anna <anna@example.com>"
        self.quote_header = re.compile(
            r"^\s*+(?:(?:" + phrases("reply_headers") + r")\s*$"
            r"|-{2,}\s*(?:" + literal("message_separators") + "|" + literal("forwarded_separators") + r")\s*(?:-{2,}|$)"
            r"|(?:" + literal("forwarded_separators") + r")\s*:?\s*$"
            r"|(?:" + literal("sender_fields") + r"):\s.{0,200}$)", re.I)
        #: the subject of a forwarded message: "Fwd: …", "WG: …"
        self.forward_subject = re.compile(r"^\s*+(?:" + literal("forwarded_subject_prefixes") + r")\s*:", re.I)
        #: the first line of a quoted message's header: "From: Anna <anna@example.com>"
        self.sender_header = re.compile(r"^\s*+(?:" + literal("sender_fields") + r"):\s", re.I)
        #: the line above a forwarded message: "---------- Forwarded message ---------", "Begin forwarded message:"
        self.forward_header = re.compile(
            r"^\s*+(?:-{2,}\s*)?(?:" + literal("forwarded_separators") + r")\s*:?\s*(?:-{2,}\s*)?$", re.I)
        #: a sign-off line: the signature delimiter "--", or a sign-off (a comma, "!" or "." may follow)
        self.sign_off = re.compile(r"^\s*+(?:--\s*$|(?:" + phrases("sign_offs") + r")[,!.]?\s*$)", re.I)
        #: the first line of a disclaimer: "This e-mail and any attachments are confidential …"
        self.disclaimer = re.compile(r"^\s*+(?:" + phrases("disclaimers") + ")", re.I)
        #: a word that makes a line after a sign-off part of a disclaimer, wherever it stands
        self.disclaimer_word = re.compile(literal("disclaimer_words"), re.I)
        #: the start of a line that adds to the message after a sign-off: "P.S.", "One more thing"
        self.more_to_say = re.compile(r"^\s*+(?:" + literal("more_to_say", whole=True) + ")", re.I)
        #: a line of a chat transcript said by the support side: "[10:42] Agent: …", "Bot: …"
        self.support_speaker = re.compile(
            r"^\s*+(?:\[[\d:. ]{3,12}\]\s*|\d{1,2}:\d\d(?::\d\d)?\s+)?(?:[\w .-]{0,30}\(\s*)?"
            r"(?:" + literal("support_speakers") + r")\b[^:\n]{0,30}:\s", re.I)
        #: any of the line patterns: a line matching none of them (and not starting with ">",
        #: see _plain_prose) in the prose part is prose, found with one regex call instead of five
        self._any_line_pattern = re.compile("|".join(
            f"(?{'i' if rx.flags & re.I else ''}:{rx.pattern})"
            for rx in (_FENCE, self.quote_header, self.sign_off, self.disclaimer, _CODE_LINE)))

    def normalise(self, text: str, subject: str | None = None, *, max_chars: int = MAX_TEXT_CHARS,
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
        # (kind, text, whether it starts a new line)
        pieces: list[list] = []
        if subject:
            pieces.append(["subject", subject, True])
        lines = text.split("\n")
        hint = ("`" in text or "~~~" in text or "#" in text or "|" in text) and _MARKDOWN_HINT.search(text)
        markdown = _markdown_kinds(text, len(lines)) if hint else None
        # Outlook forwards without a separator line: the subject says "FW: …", a header "From: …" follows
        forwarding = bool(subject) and self.forward_subject.match(subject) is not None
        for kind, run in groupby(zip(lines, self._line_kinds(lines, markdown, forwarding)), key=itemgetter(1)):
            run_lines = [line for line, _ in run]
            if kind not in ("prose", "forwarded") or not any("`" in line for line in run_lines):
                fragments = [(kind, "\n".join(run_lines), True)]
            else:
                fragments = [(k, frag, j == 0) for line in run_lines
                             for j, (k, frag) in enumerate(_fragments(line, kind))]
            for frag_kind, frag, new_line in fragments:
                if pieces and pieces[-1][0] == frag_kind:
                    pieces[-1][1] += ("\n" if new_line else "") + frag
                else:
                    pieces.append([frag_kind, frag, new_line])
        for comment in comments:
            pieces.append(["hidden", comment, True])
        out: list[str] = []
        segments: list[Segment] = []
        pos = 0
        for kind, piece, new_line in pieces:
            if not piece.strip():
                continue
            if out and new_line:
                out.append("\n")
                pos += 1
            segments.append(Segment(kind, pos, pos + len(piece)))
            out.append(piece)
            pos += len(piece)
        return NormalisedRequest("".join(out), segments, truncated, original_length, masked)

    def _plain_prose(self, line: str) -> bool:
        """Whether a line is prose whatever the state: no line pattern, quote, chat speaker or
        label matches it. The cheap character tests go first: most lines have no "[" and do
        not end in a colon."""
        if self._any_line_pattern.match(line) or line.lstrip().startswith(">"):
            return False
        if "[" in line and _BBCODE_QUOTE.search(line):
            return False
        if ":" in line and self.support_speaker.match(line):
            return False
        end = line.rstrip()[-1:]
        return not ((end in (":", "*", "_") or line.lstrip().startswith("#")) and _LABEL_LINE.match(line))

    def _line_kinds(self, lines: list[str], markdown: list[str | None] | None = None,
                    forwarding: bool = False) -> list[str]:
        kinds = ["prose"] * len(lines)
        in_fence = False
        in_forum_quote = False
        support_turn = False  # in a chat transcript, the support side is speaking
        # becomes "quoted" or "signature" for the rest of the message; or "forwarded" after the
        # header of a forwarded message under a short cover note, and "quoted" again at a quote in it
        state = "prose"
        plain_prose, quote_header = self._plain_prose, self.quote_header
        for i, line in enumerate(lines):
            decided = markdown[i] if markdown else None
            if decided == "code" and _FENCE.match(line):
                in_fence = False  # markdown-it-py has paired the fences
            if (state == "prose" and not in_fence and not in_forum_quote and not support_turn and decided is None
                    and plain_prose(line)):
                continue  # prose (the steps below would change nothing)
            if markdown is None and _FENCE.match(line):
                kinds[i] = "code"
                in_fence = not in_fence
                continue
            if in_fence:
                kinds[i] = "code"
                continue
            if _BBCODE_QUOTE.search(line):
                opened = [m.group(1) != "/" for m in _BBCODE_QUOTE.finditer(line)]
                kinds[i] = "quoted"
                in_forum_quote = opened[-1]
                continue
            if in_forum_quote:
                kinds[i] = "quoted"
                continue
            if state == "forwarded header":  # "From: …", "Date: …", blank lines, then the message
                if not line.strip() or _HEADER_FIELD.match(line):
                    kinds[i] = "quoted"
                    continue
                state = "forwarded"
            if state in ("prose", "forwarded"):
                if quote_header.match(line):
                    state = self._after_quote_header(lines, kinds, i, forwarding) if state == "prose" else "quoted"
                elif self.sign_off.match(line) and self._looks_like_end(lines, i):
                    state = "signature"
                elif self.disclaimer.match(line):
                    state = "signature"
            if state == "signature" and (line.lstrip().startswith(">") or quote_header.match(line)):
                # the cover note may end with its sender's name ("Thanks, Bob") before the forwarded message
                state = self._after_quote_header(lines, kinds, i, forwarding) if quote_header.match(line) else "quoted"
            if state not in ("prose", "forwarded"):
                kinds[i] = "quoted" if state == "forwarded header" else state
                continue
            if self.support_speaker.match(line):
                support_turn = True
            elif support_turn and (not line.strip() or _ANY_SPEAKER.match(line)):
                support_turn = False
            if support_turn or line.lstrip().startswith(">"):
                kinds[i] = "quoted"
            elif decided is not None:
                kinds[i] = decided
            elif _CODE_LINE.match(line):
                kinds[i] = "code"
            elif _LABEL_LINE.match(line) and _is_label(line):
                kinds[i] = "heading"
            if state == "forwarded" and kinds[i] == "prose":
                kinds[i] = "forwarded"
        return kinds

    def _after_quote_header(self, lines: list[str], kinds: list[str], i: int, forwarding: bool = False) -> str:
        """What follows the quote header at ``lines[i]``: a message forwarded under a short cover
        note of the customer's own is the request ("forwarded header", then "forwarded"); anything
        else is "quoted". ``forwarding``: the subject says the request forwards a message, so its
        first sender header ("From: …") starts it; so does a sender header with none of the
        customer's own words above it (an e-mail pasted or passed on as it is: a quoted earlier
        message needs a new one above it)."""
        forwards = self.forward_header.match(lines[i]) or (
            self.sender_header.match(lines[i]) and (forwarding or _words_in(lines, kinds, i) == 0))
        if (forwards and "forwarded" not in kinds[:i]
                and _words_in(lines, kinds, i) <= COVER_NOTE_WORDS):
            return "forwarded header"
        return "quoted"

    def _looks_like_end(self, lines: list[str], i: int) -> bool:
        """A sign-off starts the signature only if no more of the message follows it:
        no question, no "one more thing"/"P.S.", and no long line that is not a disclaimer."""
        for ln in lines[i + 1:]:
            if not ln.strip() or ln.lstrip().startswith(">"):
                continue
            if self.quote_header.match(ln):
                break
            if self.disclaimer.match(ln) or self.disclaimer_word.search(ln):
                continue
            if ln.rstrip().endswith("?") or self.more_to_say.match(ln) or len(ln.split()) > 12:
                return False
        return True


def _words_in(lines: list[str], kinds: list[str], end: int) -> int:
    """Words of the customer's own prose in ``lines[:end]``."""
    return sum(len(lines[i].split()) for i in range(end) if kinds[i] == "prose")


@lru_cache(maxsize=8)
def normaliser_of(words: SegmentWords) -> Normaliser:
    """The normaliser of a set of words (``RuleSet.segment_words``), made once per process."""
    return Normaliser(words)


def normaliser_for(rules_dir: str | Path | None = None) -> Normaliser:
    """The normaliser of a rules folder (default: ``$INTAKE_RULES``, else the bundled rules),
    its words read once per process: edits to them take effect in a new process, or through
    :func:`normaliser_of` with the words of the rules loaded anew."""
    return _normaliser_at(None if rules_dir is None else str(rules_dir), os.environ.get(ENV_RULES, ""))


@lru_cache(maxsize=8)
def _normaliser_at(rules_dir: str | None, env_rules: str) -> Normaliser:
    """(``env_rules`` is in the key so that a changed $INTAKE_RULES is seen.)"""
    return normaliser_of(load_segment_words(rules_dir))


@lru_cache(maxsize=1)
def default_normaliser() -> Normaliser:
    """The normaliser of the default rules folder as it is when first asked for (the
    environment is not read again on every call: that would cost 4% of normalising)."""
    return normaliser_for()


def normalise(text: str, subject: str | None = None, *, max_chars: int = MAX_TEXT_CHARS,
              mask: bool = True) -> NormalisedRequest:
    """Split a request into labelled segments (see module doc) with the words of the default
    rules folder (``$INTAKE_RULES``, else the bundled rules; see :func:`default_normaliser`);
    cut very long text. With another folder's words: ``normaliser_for(rules_dir).normalise(…)``.

    With ``mask`` (the default) secrets are replaced by ``[MASKED]`` right after
    the HTML is read, so no later stage ever holds them.
    """
    return default_normaliser().normalise(text, subject, max_chars=max_chars, mask=mask)
