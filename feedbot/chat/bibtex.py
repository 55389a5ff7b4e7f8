"""Liked papers as a BibTeX file that LaTeX accepts, whatever characters the titles hold.

Entries are built and written with bibtexparser; field text is escaped for LaTeX here (every
special character, and the `--`, ``` `` ``` and `''` ligatures, so text reads back as written).
Non-ASCII text stays UTF-8, which LaTeX and biber read natively.
"""

from __future__ import annotations

import re

import bibtexparser
from bibtexparser import model

from feedbot.store.links import abs_url, split_authors
from feedbot.store.models import Paper

_SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_SPECIAL = re.compile(r"[\\{}&%$#_~^]")
_LIGATURE = re.compile(r"(?<=-)(?=-)|(?<=`)(?=`)|(?<=')(?=')")
_AND = re.compile(r"\band\b|,", re.IGNORECASE)


def latex_escape(text: str) -> str:
    """Plain text → LaTeX text that typesets as the same characters (whitespace collapsed)."""
    text = " ".join(text.split())
    text = _SPECIAL.sub(lambda m: _SPECIALS[m.group()], text)
    return _LIGATURE.sub("{}", text)


def _author(name: str) -> str:
    # A name with a comma or the word "and" would be split by BibTeX: brace it as one name.
    escaped = latex_escape(name)
    return f"{{{escaped}}}" if _AND.search(name) else escaped


def cite_key(paper: Paper) -> str:
    words = re.findall(r"[A-Za-z0-9]+", paper.title)[:3]
    return f"feedbot{paper.id}{''.join(w.capitalize() for w in words)}"


def entry(paper: Paper) -> model.Entry:
    fields = {"title": latex_escape(paper.title)}
    names = split_authors(paper.authors)
    if names:
        fields["author"] = " and ".join(_author(n) for n in names)
    if paper.first_listed is not None:  # None: known only from an imported library
        fields["year"] = str(paper.first_listed.year)
    if paper.arxiv_id:
        fields["eprint"] = latex_escape(paper.arxiv_id)
        fields["archivePrefix"] = "arXiv"
    url = abs_url(paper.arxiv_id) if paper.arxiv_id else paper.url
    if url:
        fields["url"] = latex_escape(url) if "{" in url or "}" in url else url
    if paper.doi:
        fields["doi"] = latex_escape(paper.doi) if "{" in paper.doi or "}" in paper.doi else paper.doi  # verbatim
    if paper.first_listed is not None:
        fields["note"] = f"Listed on {paper.first_listed.isoformat()}"
    fields["abstract"] = latex_escape(paper.abstract)
    return model.Entry("misc", cite_key(paper), [model.Field(k, v) for k, v in fields.items()])


def export(papers: list[Paper]) -> str:
    """The papers as @misc entries with title, author, year, eprint, archivePrefix, url, doi, note, abstract."""
    library = bibtexparser.Library([entry(p) for p in papers])
    return bibtexparser.write_string(library)
