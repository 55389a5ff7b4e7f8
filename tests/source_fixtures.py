"""Answers written to the documented formats: HF daily papers JSON and the arXiv API's Atom feed."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

HF_ITEMS = [
    {
        "paper": {
            "id": "2403.01234",
            "authors": [{"_id": "a1", "name": "Ada Lovelace", "hidden": False},
                        {"_id": "a2", "name": "Émile Borel", "hidden": False},
                        {"_id": "a3", "name": "Grace Hopper", "hidden": False},
                        {"_id": "a4", "name": "Alan Turing", "hidden": False}],
            "publishedAt": "2024-03-04T18:59:59.000Z",
            "title": "Diffusion Models for Video Editing",
            "summary": "We edit videos with diffusion. Code: https://github.com/example/vidiff.",
            "upvotes": 42,
        },
        "publishedAt": "2024-03-05T01:23:45.000Z",
        "title": "Diffusion Models for Video Editing",
        "numComments": 3,
    },
    {
        "paper": {
            "id": "2403.05678",
            "authors": [{"_id": "b1", "name": "Kurt Gödel"}],
            "publishedAt": "2024-03-04T12:00:00.000Z",
            "title": "Über Sparse Attention & Long Contexts",
            "summary": "Sparse attention for long contexts.",
            "upvotes": 7,
            "githubRepo": "https://github.com/example/sparse",
        },
        "publishedAt": "2024-03-05T02:00:00.000Z",
        "title": "Über Sparse Attention & Long Contexts",
    },
]


def hf_json(items=None) -> bytes:
    return json.dumps(HF_ITEMS if items is None else items).encode()


def arxiv_entry(arxiv_id: str, title: str, summary: str = "An abstract.", authors=("A. Author", "B. Author"),
                published: str = "2024-03-04T17:59:59Z", categories=("cs.LG",), comment: str = "") -> str:
    names = "".join(f"<author><name>{escape(a)}</name></author>" for a in authors)
    cats = "".join(f'<category term="{c}" scheme="http://arxiv.org/schemas/atom"/>' for c in categories)
    extra = f"<arxiv:comment>{escape(comment)}</arxiv:comment>" if comment else ""
    return (f"<entry><id>http://arxiv.org/abs/{arxiv_id}v1</id><updated>{published}</updated>"
            f"<published>{published}</published><title>{escape(title)}</title><summary>{escape(summary)}</summary>"
            f"{names}{extra}<link href=\"http://arxiv.org/abs/{arxiv_id}v1\" rel=\"alternate\" type=\"text/html\"/>"
            f"<arxiv:primary_category term=\"{categories[0]}\"/>{cats}</entry>")


def arxiv_feed(entries: list[str], total: int | None = None, start: int = 0) -> bytes:
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
            "<feed xmlns=\"http://www.w3.org/2005/Atom\" xmlns:opensearch=\"http://a9.com/-/spec/opensearch/1.1/\" "
            "xmlns:arxiv=\"http://arxiv.org/schemas/atom\">"
            "<title type=\"html\">ArXiv Query</title><id>http://arxiv.org/api/x</id>"
            f"<opensearch:totalResults>{len(entries) if total is None else total}</opensearch:totalResults>"
            f"<opensearch:startIndex>{start}</opensearch:startIndex>"
            f"<opensearch:itemsPerPage>{len(entries)}</opensearch:itemsPerPage>"
            + "".join(entries) + "</feed>").encode()


ARXIV_ERROR = arxiv_feed(["<entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_1234</id>"
                          "<title>Error</title><summary>incorrect id format for 1234</summary></entry>"], total=1)
