"""Identity resolution rules: folding names, blocking keys, and the match decision between two people. No I/O.

A source record (a VSCO contact, a HoneyBook CSV row, a Zapier hook, a marketplace inquiry) becomes a set of
:class:`Features`. Candidates for a match are found by *blocking keys* (normalized e-mail, phone, wedding
date), which the store indexes, so resolution costs O(candidates), not O(clients). :func:`decide` then
accepts a candidate only with corroborating evidence:

* a shared e-mail or phone **and** a compatible first name (typos, swapped first/last, diacritics,
  nicknames by prefix and the common diminutives of :data:`NICKNAMES` tolerated); the last name may differ
  (a married name). A shared *family* address
  used by a different couple has a different first name, so it never merges on its own;
* no shared contact point: the same wedding date **and** both names close (``NAME_THRESHOLD``).

Every accepted match carries its rule, a score and the evidence, which the store keeps with the merge.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rapidfuzz.distance import OSA
from rapidfuzz.fuzz import ratio

from wedsync.domain.crm import normalize_email, normalize_phone

NAME_THRESHOLD = 85.0  # rapidfuzz ratio (0-100) above which two name parts are "the same"
STRICT_THRESHOLD = 87.0  # names alone (with a wedding date): "Jonathon"/"Jonathan" 87.5, "Jon"/"Joan" 85.7 not
FIRST_THRESHOLD = 85.0  # a first name with a typo ("Jonathon"/"Jonathan" 87.5; one edit in 4+ letters: 85)
_NON_WORD = re.compile(r"[\W_]+")
_SPACES = re.compile(r"\s+")


@functools.lru_cache(maxsize=1 << 16)  # pure; names repeat (every candidate of a page is folded again)
def fold(value: str | None) -> str:
    """Lowercase letters and digits, accents removed, any script kept (``Zoë Müller-Ortiz`` -> ``zoe muller
    ortiz``; ``山田 太郎`` stays ``山田 太郎``)."""
    if not value:
        return ""
    if value.isascii() and value.isalpha():  # the common case, one plain word: nothing to strip
        return value.lower()
    decomposed = unicodedata.normalize("NFKD", value)
    ascii_ = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().translate(_LETTERS)
    return _SPACES.sub(" ", _NON_WORD.sub(" ", ascii_)).strip()


#: Latin letters that carry their mark in the letter itself (a stroke, a missing dot), so that NFKD does not take
#: it off, as people write them without it: "Đặng" is "Dang", Turkish "Yildiz" has dotless i's, "Þór" is "Thor".
_LETTERS = str.maketrans({"ß": "ss", "ø": "o", "æ": "ae", "ł": "l", "đ": "d", "ð": "d", "\u0131": "i", "þ": "th",
                          "œ": "oe", "ħ": "h", "ŧ": "t", "ƒ": "f", "ŋ": "ng", "ĸ": "k"})


def search_text(first: str | None, last: str | None, display: str | None, email: str | None,
                phone: str | None) -> str:
    """What a client search looks in: the names folded (:func:`fold`), the e-mail lowercased and the phone,
    ``|``-separated so a match never spans two of them."""
    full = " ".join(p for p in (first, last) if p)
    shown = fold(display)
    names = " / ".join(dict.fromkeys(x for x in (shown, shown if display == full else fold(full)) if x))
    return f"|{names}|{(email or '').lower()}|{phone or ''}|"


def search_patterns(q: str) -> list[str]:
    """The LIKE patterns (``\\`` escapes) a query matches :func:`search_text` with: its folded form (names
    without case or accents), and as typed, lowercased (an e-mail, a phone)."""
    out: list[str] = []
    for term in (fold(q), q.strip().lower()):
        if term:
            escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            if pattern not in out:
                out.append(pattern)
    return out


GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def email_key(value: str | None) -> str | None:
    """The comparable form of an e-mail: trimmed, lowercased. At Gmail (``gmail.com``, ``googlemail.com``)
    dots in the name and a ``+tag`` reach the same mailbox, as Google documents, so ``Ana.Ruiz+wedding@
    googlemail.com`` compares as ``anaruiz@gmail.com``; at other providers they are kept (they may really be
    different mailboxes there)."""
    e = normalize_email(value)
    if not e or "@" not in e:
        return None
    local, _, domain = e.rpartition("@")
    if domain in GMAIL_DOMAINS:
        mailbox = local.split("+", 1)[0].replace(".", "")
        if mailbox:
            return f"{mailbox}@gmail.com"
    return e


def phone_key(value: str | None, region: str | None = None) -> str | None:
    """E.164 without extension when the number parses (``region`` is the vendor's default country)."""
    p = normalize_phone(value, region)
    if not p or not p.startswith("+"):
        return None
    return p.split(";", 1)[0]


@dataclass(frozen=True, slots=True)
class Features:
    """What identity resolution compares: folded names, contact points, wedding dates."""

    first: str = ""
    last: str = ""
    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    dates: frozenset[date] = frozenset()

    def keys(self) -> list[str]:
        return blocking_keys(self)

    def union(self, other: Features) -> Features:
        """The features of a merged identity (names of ``self`` kept: they are the golden record's)."""
        return Features(self.first or other.first, self.last or other.last, self.emails | other.emails,
                        self.phones | other.phones, self.dates | other.dates)


def features(first: str | None = None, last: str | None = None, display: str | None = None,
             emails: Iterable[str | None] = (), phones: Iterable[str | None] = (),
             dates: Iterable[date | None] = (), region: str | None = None) -> Features:
    """Features of one record; a display name fills missing first/last ("Ana Ruiz" -> ana / ruiz)."""
    f, last_ = fold(first), fold(last)
    if (not f or not last_) and display:
        parts = fold(display).split(" ")
        if parts and parts[0]:
            f = f or parts[0]
            last_ = last_ or (parts[-1] if len(parts) > 1 else "")
    return Features(
        first=f, last=last_,
        emails=frozenset(k for k in (email_key(e) for e in emails) if k),
        phones=frozenset(k for k in (phone_key(p, region) for p in phones) if k),
        dates=frozenset(d for d in dates if d is not None),
    )


def initials(f: Features) -> str:
    """The name initials in sorted order (``ar`` for Ana Ruiz and for Ruiz Ana)."""
    return "".join(sorted(p[:1] for p in (f.first, f.last) if p))


def nickname_tags(f: Features) -> list[str]:
    """Initials a phone key also blocks with when a name part is a given name of :data:`NICKNAMES` or one of
    its diminutives starting with another letter: that part's initial replaced by the given name's (``peggy
    hale`` -> ``hm``, as ``margaret hale``; ``bob jones`` -> ``jr``; ``pepe garcia`` -> ``gj``; either part,
    for swapped names). Two diminutives of one name (``bill``/``liam``) meet under the given name's letter."""
    own = initials(f)
    tags: list[str] = []
    for part, other in ((f.first, f.last), (f.last, f.first)):
        for letter in _NICK_INITIALS.get(part, ()):
            tag = "".join(sorted(p for p in (letter, other[:1]) if p))
            if tag != own and tag not in tags:
                tags.append(tag)
    return tags


def blocking_keys(f: Features) -> list[str]:
    """Index keys under which candidates are looked up: ``e:<email>``, ``p:<e164>|<initials>``,
    ``d:<date>|<initials>``. Phones and wedding dates are shared (households, offices, a busy Saturday;
    synthetic phone pools), so they block together with the name initials: a candidate must also share
    them, which every phone or date rule of :func:`decide` needs anyway (both names similar). A phone also
    blocks with the initials of :func:`nickname_tags` ("Peggy"/"Margaret" share a phone and are one person to
    ``decide``, but not their initials); dates need not: their rule forgives no diminutive."""
    tag = initials(f)
    tags = [tag, *nickname_tags(f)]
    keys = [f"e:{e}" for e in sorted(f.emails)]
    keys += [f"p:{p}|{t}" for p in sorted(f.phones) for t in tags]
    keys += [f"d:{d.isoformat()}|{tag}" for d in sorted(f.dates)]
    return keys


def key_value(key: str) -> str:
    """The e-mail, phone or date a blocking key carries (without its initials)."""
    return key[2:].split("|", 1)[0]


#: Given names and the diminutives people go by that are neither a prefix nor one typo away (those already
#: match): folded, as :func:`fold` leaves them. English first, then Spanish, German, Polish and French ones.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "abigail": ("abby", "gail"), "albert": ("bert", "al"), "alexander": ("sasha", "sandy", "xander"),
    "alexandra": ("sasha", "sandy", "lexi", "alexa"), "alfred": ("fred", "alfie"), "andrew": ("drew", "andy"),
    "anthony": ("tony",), "antonio": ("tony", "toni", "nono"), "barbara": ("babs", "barb", "basia"),
    "benjamin": ("ben", "benji", "benny"), "catherine": ("kate", "katie", "cathy", "kat", "kitty", "cat"),
    "katherine": ("kate", "katie", "kathy", "kat", "kitty", "kay"), "kathryn": ("kate", "katie", "kathy"),
    "charles": ("charlie", "chuck", "chas"), "charlotte": ("lottie", "charlie", "lotte"),
    "christina": ("tina", "chrissy"), "christine": ("tina", "chrissy"), "christopher": ("kit", "topher"),
    "daniel": ("danny",), "david": ("dave", "davy"), "deborah": ("debbie", "deb"), "dolores": ("lola",),
    "donald": ("don", "donny"), "dorothy": ("dot", "dottie", "dora"), "edward": ("ted", "teddy", "ned", "eddie"),
    "eleanor": ("ellie", "nell", "nora"), "elizabeth": ("liz", "lizzie", "beth", "betty", "betsy", "eliza",
                                                         "libby", "lisa", "elise", "ellie"),
    "emily": ("emmy", "millie"), "frances": ("fran", "frankie", "fanny"),
    "francis": ("frank", "frankie"), "francisco": ("paco", "pancho", "curro", "fran"),
    "frederick": ("fred", "freddie", "fritz"), "gabriel": ("gabe",), "gabrielle": ("gaby", "gabby", "elle"),
    "gerald": ("gerry", "jerry"), "gregory": ("greg",), "harold": ("harry", "hal"),
    "henry": ("harry", "hank", "hal"), "isabel": ("izzy", "bella", "isa", "chabela"),
    "isabella": ("izzy", "bella"), "jacob": ("jake", "kuba"), "jakub": ("kuba",),
    "james": ("jim", "jimmy", "jamie"), "jennifer": ("jenny", "jen", "jenn"), "john": ("jack", "johnny"),
    "jonathan": ("jon", "jonny", "nate"), "joseph": ("joe", "joey"), "jose": ("pepe", "chepe"),
    "josef": ("sepp", "seppi", "jupp"), "johannes": ("hans", "jan", "hannes"), "joanna": ("asia", "jo"),
    "katarzyna": ("kasia", "kasha"), "lawrence": ("larry",), "leonard": ("leo", "len", "lenny"),
    "magdalena": ("magda", "lena", "madzia"), "malgorzata": ("gosia", "malgosia"), "margaret": (
        "maggie", "meg", "peggy", "madge", "marge", "greta", "daisy", "rita"),
    "mary": ("molly", "polly", "mae", "mamie"), "matthew": ("matt", "matty"), "michael": ("mike", "mikey", "mick"),
    "nicholas": ("nick", "nicky", "klaus"), "nikolaus": ("klaus",), "patricia": ("patty", "trish", "tricia",
                                                                                   "pat"),
    "patrick": ("pat", "paddy", "rick"), "peter": ("pete",), "rebecca": ("becky", "becca"),
    "richard": ("rick", "ricky", "dick", "rich", "richie"), "robert": ("bob", "bobby", "rob", "robbie", "bert"),
    "ronald": ("ron", "ronnie"), "samantha": ("sam", "sammy"), "samuel": ("sam", "sammy"),
    "sarah": ("sally", "sadie"), "stephen": ("steve", "stevie"), "steven": ("steve", "stevie"),
    "susan": ("sue", "susie", "suzy"), "theodore": ("ted", "teddy", "theo"), "thomas": ("tom", "tommy"),
    "tomasz": ("tomek",), "timothy": ("tim", "timmy"), "victoria": ("vicky", "tori", "vic"),
    "virginia": ("ginny", "ginger"), "walter": ("walt", "wally"), "william": ("bill", "billy", "will", "liam"),
    "wilhelm": ("willi", "willy"), "aleksandra": ("ola", "ala"), "aleksander": ("olek",),
    "bartlomiej": ("bartek",), "wojciech": ("wojtek",), "zofia": ("zosia",), "ignacio": ("nacho",),
    "concepcion": ("concha", "conchita"), "guadalupe": ("lupe", "lupita"), "manuel": ("manolo", "manu"),
    "enrique": ("quique",), "jesus": ("chuy", "chucho"), "rosario": ("charo",), "mercedes": ("merche",),
    "guillaume": ("guillou",), "jean-baptiste": ("jb",), "anne-marie": ("annie",),
}


def _nickname_groups() -> dict[str, frozenset[int]]:
    groups: dict[str, set[int]] = {}
    for i, (name, short) in enumerate(NICKNAMES.items()):
        for n in (name, *short):
            groups.setdefault(fold(n), set()).add(i)
    return {n: frozenset(g) for n, g in groups.items()}


_NICK_GROUPS = _nickname_groups()
_GIVEN = [fold(n) for n in NICKNAMES]
#: folded name -> first letters of the given names it is, or is a diminutive of, other than its own
_NICK_INITIALS: dict[str, tuple[str, ...]] = {
    n: letters for n, g in _NICK_GROUPS.items()
    if (letters := tuple(sorted({_GIVEN[i][:1] for i in g} - {n[:1]})))}


def same_given_name(a: str, b: str) -> bool:
    """Whether two folded names are one given name and its diminutive (``robert``/``bob``,
    ``katarzyna``/``kasia``), or two diminutives of one name (``bob``/``robbie``)."""
    ga, gb = _NICK_GROUPS.get(a), _NICK_GROUPS.get(b)
    return bool(ga and gb and ga & gb)


@functools.lru_cache(maxsize=1 << 16)  # pure; the same name pairs recur across a page's candidates
def _part_sim(a: str, b: str, lenient: bool = True) -> float:
    if not a or not b:
        return 0.0
    if a == b:
        return 100.0
    if lenient and same_given_name(a, b):
        return 90.0  # "Bob"/"Robert", "Kasia"/"Katarzyna": the name and what the person goes by
    short, long_ = sorted((a, b), key=len)
    if lenient and len(short) >= 3 and (long_.startswith(short + " ")
                                        or (long_.startswith(short) and len(short) >= 4)):
        return 90.0  # "Chris"/"Christopher", a double first name
    score = float(ratio(a, b))
    if (lenient and score < NAME_THRESHOLD and min(len(a), len(b)) >= 4 and OSA.distance(a, b) <= 1
            and not any(ch.isdigit() for ch in a + b)):
        score = NAME_THRESHOLD  # one typo (or two letters swapped) in a name long enough to stay that name
    return score


def name_similarity(a: Features, b: Features, lenient: bool = True) -> tuple[float, float, bool]:
    """(first-name similarity, last-name similarity, swapped) in the orientation that fits best (the larger
    total: "Amanda Parsons"/"Amanda Mcintyre" is a new last name, not swapped names, although each swapped pair
    happens to be less unlike than "Parsons"/"Mcintyre"); ``lenient`` counts one typo in a 4+ letter name as a
    match."""
    straight = (_part_sim(a.first, b.first, lenient), _part_sim(a.last, b.last, lenient))
    swapped = (_part_sim(a.first, b.last, lenient), _part_sim(a.last, b.first, lenient))
    if sum(swapped) > sum(straight):
        return swapped[0], swapped[1], True
    return straight[0], straight[1], False


@dataclass(frozen=True, slots=True)
class Match:
    """Why two records are one client: the rule that fired, a 0-100 score and its evidence."""

    rule: str
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)


def decide(a: Features, b: Features) -> Match | None:
    """Whether ``a`` and ``b`` are the same person, and why; None when the evidence is not enough."""
    emails = a.emails & b.emails
    phones = a.phones & b.phones
    dates = a.dates & b.dates
    first, last, swapped = name_similarity(a, b)
    evidence: dict[str, Any] = {"first_similarity": round(first, 1), "last_similarity": round(last, 1)}
    if swapped:
        evidence["swapped_names"] = True
    dates_conflict = bool(a.dates and b.dates and not dates)
    if emails or phones:
        contact = "email" if emails else "phone"
        evidence[contact] = sorted(emails or phones)[0]
        if dates_conflict and first < 100.0:
            return None  # a similar name at another wedding sharing a (family) address: not enough
        if dates:
            evidence["wedding_date"] = min(dates).isoformat()
        if first >= FIRST_THRESHOLD and last >= NAME_THRESHOLD:
            bonus = 5.0 if emails and phones else 0.0
            return Match(f"{contact}+name", min(100.0, (first + last) / 2 + bonus), evidence)
        # A new last name (marriage) with the same personal e-mail; not for a phone, which households and
        # offices share, and not for another wedding.
        if emails and first >= FIRST_THRESHOLD and not dates_conflict:
            return Match("email+first_name", min(first, 95.0) - 10.0, evidence)
        if emails and not (a.first or a.last or b.first or b.last):
            return Match("email", 80.0, evidence)  # nameless records (a company inbox): the address is all
        return None
    if dates and first >= NAME_THRESHOLD and last >= NAME_THRESHOLD:
        # The two partners of one wedding share its date and often a last name ("Mark"/"Mary Smith",
        # "Chris"/"Christa"): without a shared contact point, neither a one-letter difference nor a prefix
        # is forgiven in the first name here (a typo in the last name still is).
        strict_first, _, _ = name_similarity(a, b, lenient=False)
        if strict_first >= STRICT_THRESHOLD and last >= NAME_THRESHOLD:
            evidence["wedding_date"] = min(dates).isoformat()
            return Match("name+wedding_date", (first + last) / 2 - 5.0, evidence)
    return None


def best_match(f: Features, candidates: Iterable[tuple[str, Features]]) -> tuple[str, Match] | None:
    """The best-scoring accepted candidate (ties: the smallest id, so resolution is deterministic)."""
    best: tuple[str, Match] | None = None
    for cid, cf in candidates:
        m = decide(f, cf)
        if m is None:
            continue
        if best is None or m.score > best[1].score or (m.score == best[1].score and cid < best[0]):
            best = (cid, m)
    return best
