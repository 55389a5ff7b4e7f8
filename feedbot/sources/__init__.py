"""Built-in paper sources: the Hugging Face daily papers API and the arXiv API.

Each fetch turns one answer into paper records and stores them exactly as a dump is stored (one
transaction, the same dedupe and listings), so a deployment needs no scraper. `spec` parses
FEEDBOT_SOURCES, `http` is the polite client, `hf` and `arxiv` read the two formats into the
`records` a dump's parser (`dumps`) also produces, `run` glues a fetch to the store (`ingest`).
"""
