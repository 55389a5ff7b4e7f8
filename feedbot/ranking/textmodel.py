"""The TF-IDF text model: fitted on the whole corpus, saved under the data dir, refitted only when
the corpus changed. Ranking loads it and never refits; papers newer than the fit are transformed
with the fitted vocabulary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import joblib
import numpy as np
import scipy.sparse as sp
from sklearn.cluster import MiniBatchKMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.store.models import Paper

log = logging.getLogger(__name__)

# Chosen on the CiteULike-t quality benchmark (benchmarks/quality_citeulike.py), not by taste.
VECTORIZER_OPTIONS = dict(
    stop_words="english",
    sublinear_tf=True,
    ngram_range=(1, 2),
    min_df=1,
    max_df=0.5,
    max_features=50_000,
    dtype=np.float32,
    strip_accents="unicode",
    token_pattern=r"(?u)\b\w[\w'’-]*\w\b",  # keeps "zero-shot" and "self-supervised" whole
)
MODEL_FORMAT = 1


def document(title: str, abstract: str) -> str:
    """The text a paper is known by; the title twice, so its words weigh more than the abstract's."""
    return f"{title}. {title}. {abstract}"


def make_vectorizer(**overrides) -> TfidfVectorizer:
    return TfidfVectorizer(**{**VECTORIZER_OPTIONS, **overrides})


@dataclass
class TextModel:
    """A fitted vectorizer plus the vectors of the papers it was fitted on (rows L2-normalised)."""

    vectorizer: TfidfVectorizer
    paper_ids: np.ndarray
    vectors: sp.csr_matrix
    corpus_version: str
    fitted_at: datetime
    fit_seconds: float
    topics: np.ndarray  # k-means topic of each fitted paper
    topic_centres: np.ndarray  # (topics x vocabulary), rows L2-normalised
    background: np.ndarray  # mean vector of the corpus
    _row_of: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._row_of = {int(pid): row for row, pid in enumerate(self.paper_ids)}

    @property
    def vocabulary_size(self) -> int:
        return len(self.vectorizer.vocabulary_)

    @cached_property
    def terms(self) -> np.ndarray:
        """Each column's term, built once per model (the vectorizer builds the array anew each call)."""
        return self.vectorizer.get_feature_names_out()

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        if not texts:
            return sp.csr_matrix((0, self.vocabulary_size), dtype=np.float32)
        return self.vectorizer.transform(texts).tocsr()

    def topics_for(self, vectors: sp.csr_matrix) -> np.ndarray:
        """The nearest topic centre of each row."""
        if vectors.shape[0] == 0:
            return np.empty(0, np.int32)
        return np.asarray(np.argmax(vectors @ self.topic_centres.T, axis=1)).ravel().astype(np.int32)

    def vectors_for(self, session: Session, ids: list[int]) -> sp.csr_matrix:
        """Vectors of these papers, in order; papers newer than the fit are transformed now."""
        missing = [i for i in ids if int(i) not in self._row_of]
        fresh: dict[int, sp.csr_matrix] = {}
        if missing:
            found = session.execute(
                select(Paper.id, Paper.title, Paper.abstract).where(Paper.id.in_(missing))
            ).all()
            matrix = self.transform([document(t, a) for _, t, a in found])
            fresh = {pid: matrix[n] for n, (pid, _, _) in enumerate(found)}
        if not fresh:
            return self.vectors[[self._row_of[int(i)] for i in ids]]
        empty = sp.csr_matrix((1, self.vocabulary_size), dtype=np.float32)
        rows = [self.vectors[self._row_of[int(i)]] if int(i) in self._row_of else fresh.get(int(i), empty)
                for i in ids]
        return sp.vstack(rows, format="csr") if rows else empty[:0]


def corpus_version(session: Session) -> str:
    """Papers are only ever added, so their count and highest id identify the corpus."""
    count, highest = session.execute(select(func.count(), func.max(Paper.id))).one()
    return f"{count}-{highest or 0}"


class NoPapersError(ValueError):
    """The corpus is empty: nothing to fit before the first ingest."""


# Options relaxed in turn when a small or odd corpus leaves no terms: `max_df` prunes every word of
# a two-paper corpus, stop words are all a short title may have, and a corpus of emoji or symbols
# has no word tokens at all (characters then stand in for words).
FALLBACK_OPTIONS = (
    {},
    {"max_df": 1.0},
    {"max_df": 1.0, "stop_words": None, "token_pattern": r"(?u)\b\w+\b"},
    {"max_df": 1.0, "stop_words": None, "analyzer": "char", "ngram_range": (1, 1),
     "strip_accents": None, "token_pattern": None},
)


SMALL_CORPUS = 20  # papers; below this `max_df` is not applied


def fit_vectorizer(documents: list[str]) -> tuple[TfidfVectorizer, sp.csr_matrix]:
    """Fit with the benchmarked options, relaxing them only when they leave no terms at all."""
    if not documents:
        raise NoPapersError("there are no papers to fit the text model on: ingest some dumps first")
    # In a first listing of a few papers, a word half of them use is their topic, not noise to prune.
    options = FALLBACK_OPTIONS if len(documents) >= SMALL_CORPUS else FALLBACK_OPTIONS[1:]
    for overrides in options:
        vectorizer = make_vectorizer(**overrides)
        try:
            return vectorizer, vectorizer.fit_transform(documents).tocsr()
        except ValueError:  # "After pruning, no terms remain" / "empty vocabulary"
            continue
    # Unreachable for non-empty text (every document has characters), kept as a clear failure.
    raise ValueError("the papers' titles and abstracts contain no characters to fit the text model on")


def fit(session: Session) -> TextModel:
    """Fit the vectorizer on every paper's title and abstract (one paper is enough)."""
    start = time.perf_counter()
    rows = session.execute(select(Paper.id, Paper.title, Paper.abstract).order_by(Paper.id)).all()
    vectorizer, vectors = fit_vectorizer([document(t, a) for _, t, a in rows])
    topics, centres = fit_topics(vectors)
    return TextModel(
        vectorizer=vectorizer,
        paper_ids=np.array([r[0] for r in rows], dtype=np.int64),
        vectors=vectors,
        corpus_version=corpus_version(session),
        fitted_at=datetime.now(UTC),
        fit_seconds=time.perf_counter() - start,
        topics=topics,
        topic_centres=centres,
        background=np.asarray(vectors.mean(axis=0)).ravel().astype(np.float32),
    )


def fit_topics(vectors: sp.csr_matrix, per_topic: int = 30, most: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the corpus into topics (k-means on the unit vectors) for multi-vector profiles."""
    n = vectors.shape[0]
    k = int(np.clip(n // per_topic, 1, most))
    if k == 1:
        centre = normalize(np.asarray(vectors.mean(axis=0)))
        return np.zeros(n, np.int32), centre.astype(np.float32)
    model = MiniBatchKMeans(n_clusters=k, random_state=0, n_init=3, batch_size=2048).fit(vectors)
    return model.labels_.astype(np.int32), normalize(model.cluster_centers_).astype(np.float32)


def _path(model_dir: Path, version: str) -> Path:
    return model_dir / f"tfidf-v{MODEL_FORMAT}-{version}.joblib"


def _order(version: str) -> tuple[int, int]:
    """Corpus versions in the order they happen (papers are only added)."""
    count, _, highest = version.partition("-")
    return (int(highest), int(count)) if count.isdigit() and highest.isdigit() else (-1, -1)


def saved_versions(model_dir: Path) -> list[str]:
    """Corpus versions with a saved fit, newest first, from file names alone (no stat: a file
    listed here may be gone a moment later, and that is fine)."""
    prefix = f"tfidf-v{MODEL_FORMAT}-"
    versions = [p.name[len(prefix):-len(".joblib")] for p in model_dir.glob(f"{prefix}*.joblib")]
    return sorted((v for v in versions if _order(v) >= (0, 0)), key=_order, reverse=True)


def save(model: TextModel, model_dir: Path) -> Path:
    """Write under a unique temporary name, rename atomically, then remove older fits. Two
    processes saving at once each write their own file; a reader sees whole files only."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = _path(model_dir, model.corpus_version)
    handle, temporary = tempfile.mkstemp(dir=model_dir, prefix=".tfidf-", suffix=".tmp")
    os.close(handle)
    try:
        joblib.dump(
            {name: getattr(model, name) for name in (
                "vectorizer", "paper_ids", "vectors", "corpus_version", "fitted_at", "fit_seconds",
                "topics", "topic_centres", "background")},
            temporary,
        )
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    for version in saved_versions(model_dir):
        if _order(version) < _order(model.corpus_version):
            _path(model_dir, version).unlink(missing_ok=True)
    for leftover in model_dir.glob(".tfidf-*.tmp"):  # from a process killed mid-save
        with contextlib.suppress(FileNotFoundError):
            if time.time() - leftover.stat().st_mtime > 3600:
                leftover.unlink()
    return path


def load_version(model_dir: Path, version: str) -> TextModel | None:
    """That fit, or None when it is not there (any more)."""
    try:
        return TextModel(**joblib.load(_path(model_dir, version)))
    except FileNotFoundError:
        return None


def load_latest(model_dir: Path) -> TextModel | None:
    """The newest saved fit; a file removed by a concurrent save is skipped for the next one."""
    for _ in range(3):
        for version in saved_versions(model_dir):
            model = load_version(model_dir, version)
            if model is not None:
                return model
    return None


def ensure(session: Session, model_dir: Path, force: bool = False) -> tuple[TextModel, bool]:
    """The saved model, refitted first when the corpus changed (or `force`); and whether it was."""
    version = corpus_version(session)
    current = None if force else load_version(model_dir, version) if version in saved_versions(model_dir) else None
    if current is not None:
        return current, False
    model = fit(session)
    save(model, model_dir)
    log.info("text model fitted papers=%d vocabulary=%d seconds=%.2f", len(model.paper_ids),
             model.vocabulary_size, model.fit_seconds)
    return model, True


def load(session: Session, model_dir: Path) -> TextModel:
    """The newest saved model for ranking; fitted once if none exists yet (never refitted here)."""
    model = load_latest(model_dir)
    if model is None:
        model, _ = ensure(session, model_dir)
    return model


class ModelCache:
    """The fitted text model for the corpus in the database. Whichever process refits (the worker,
    `feedbot model refit`, an ingest elsewhere), the next `get` loads the newest saved fit; file
    names carry the corpus version, so checking costs one small query and a directory listing."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._model: TextModel | None = None

    def get(self, session: Session) -> TextModel | None:
        """The newest saved fit, or None before the first ingest (no papers: nothing to fit)."""
        saved = saved_versions(self.model_dir)
        if self._model is None or (saved and saved[0] != self._model.corpus_version):
            newest = load_latest(self.model_dir) if saved else None
            try:
                self._model = newest or self._model or load(session, self.model_dir)
            except NoPapersError:
                return None
        return self._model

    def stale(self, session: Session) -> bool:
        """Whether the corpus moved on since the newest saved fit (a refit is due)."""
        saved = saved_versions(self.model_dir)
        return not saved or saved[0] != corpus_version(session)
