"""A subscriber's existing papers as their profile on day one: `parse` reads a library file or
pasted ids (BibTeX, RIS, CSL-JSON, Zotero JSON, plain ids), `fetch` reads the arXiv, OpenAlex and
Zotero APIs, `resolve` turns entries into papers to store, `jobs` runs one import (claimed, stored
in one transaction, undone)."""
