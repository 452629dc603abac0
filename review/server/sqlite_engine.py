"""An Argilla 2.8 search engine that needs no Elasticsearch: it reads Argilla's own
database.

Argilla's server keeps every record, response and suggestion in its SQL database and
copies them into a search index. This engine keeps no index: `search` loads the
dataset's records (with their responses and suggestions) through the server's own
SQLAlchemy session and filters, sorts and pages them in Python. That is exact and
always fresh (the server creates a new engine per request and the rq worker is a
separate process, so an in-memory index would go stale); it costs one read of the
dataset per search, fine for a team's review queue (thousands of records), not for
millions.

This module runs inside argilla-server's own virtual environment (its pins conflict
with distill's); `launch.py` registers it before Argilla's CLI starts.
"""

from __future__ import annotations

import random
from typing import Any
from uuid import UUID

from argilla_server.database import AsyncSessionLocal
from argilla_server.enums import ResponseStatusFilter, SimilarityOrder, SortOrder
from argilla_server.models import (
    Dataset,
    MetadataProperty,
    Record,
    Response,
    Suggestion,
    User,
    VectorSettings,
)
from argilla_server.search_engine import (
    AndFilter,
    Filter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import select
from sqlalchemy.orm import selectinload

NAME = "sqlite"


async def _records(dataset_id: UUID) -> list[Record]:
    async with AsyncSessionLocal() as db:
        result = await db.execute(
            select(Record)
            .where(Record.dataset_id == dataset_id)
            .options(
                selectinload(Record.responses),
                selectinload(Record.suggestions).selectinload(Suggestion.question),
            )
            .order_by(Record.inserted_at.asc(), Record.id.asc())
        )
        return list(result.scalars().all())


def _value(v: Any) -> Any:
    return v.value if hasattr(v, "value") else v


def _responses(record: Record, user: User | None) -> list[Response]:
    return [r for r in record.responses if user is None or r.user_id == user.id]


def _scope_values(record: Record, scope: Any) -> list[Any]:
    """The values a filter or sort scope sees on one record."""
    if isinstance(scope, RecordFilterScope):
        return [_value(getattr(record, scope.property, None))]
    if isinstance(scope, MetadataFilterScope):
        name = getattr(scope.metadata_property, "name", scope.metadata_property)
        value = (record.metadata_ or {}).get(name)
        return value if isinstance(value, list) else [value]
    if isinstance(scope, SuggestionFilterScope):
        out = []
        for s in record.suggestions:
            if s.question.name == scope.question:
                value = getattr(s, scope.property, None)
                out += value if isinstance(value, list) else [value]
        return out
    if isinstance(scope, ResponseFilterScope):
        responses = _responses(record, scope.user)
        if scope.question is None:
            return [_value(r.status) for r in responses]
        out = []
        for r in responses:
            value = ((r.values or {}).get(scope.question) or {}).get("value")
            out += value if isinstance(value, list) else [value]
        return out
    raise ValueError(f"unsupported scope {scope}")


def _matches(record: Record, f: Filter) -> bool:
    if isinstance(f, AndFilter):
        return all(_matches(record, g) for g in f.filters)
    scope = f.scope
    if isinstance(f, TermsFilter):
        wanted = {str(_value(v)) for v in f.values}
        if (
            isinstance(scope, ResponseFilterScope)
            and scope.question is None
            and ResponseStatusFilter.pending.value in wanted
            and not _responses(record, scope.user)
        ):
            return True  # pending: no response (by this user) yet
        return any(str(v) in wanted for v in _scope_values(record, scope) if v is not None)
    if isinstance(f, RangeFilter):
        for v in _scope_values(record, scope):
            if v is None:
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue
            if (f.ge is None or x >= f.ge) and (f.le is None or x <= f.le):
                return True
        return False
    raise ValueError(f"unsupported filter {f}")


def _text(record: Record, query: TextQuery | str | None) -> float | None:
    """A crude relevance score: the share of query words found (None: no match)."""
    if query is None:
        return 1.0
    q = query.q if isinstance(query, TextQuery) else str(query)
    field = query.field if isinstance(query, TextQuery) else None
    texts = [str(v) for k, v in (record.fields or {}).items() if field in (None, k)]
    words = [w for w in q.lower().split() if w not in ("and", "or", "*")]
    if not words:
        return 1.0
    hay = " ".join(texts).lower()
    hits = sum(w.strip('"') in hay for w in words)
    return hits / len(words) if hits else None


def _sort_key(record: Record, order: Order) -> tuple[int, Any]:
    values = [v for v in _scope_values(record, order.scope) if v is not None]
    if not values:
        return (1, 0)  # missing values last either way
    v = values[0]
    if isinstance(v, (int, float)):
        return (0, v)
    return (0, str(v))


class SQLiteSearchEngine(SearchEngine):
    @classmethod
    async def new_instance(cls) -> SQLiteSearchEngine:
        return cls()

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"engine": NAME, "note": "reads Argilla's database; keeps no index"}

    # The database is the index: nothing to create, update or delete.
    async def create_index(self, dataset: Dataset) -> None:
        return None

    async def delete_index(self, dataset: Dataset) -> None:
        return None

    async def configure_metadata_property(self, dataset: Dataset, mp: MetadataProperty) -> None:
        return None

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        return None

    async def index_records(self, dataset: Dataset, records: Any) -> None:
        return None

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        return None

    async def delete_records(self, dataset: Dataset, records: Any) -> None:
        return None

    async def update_record_response(self, response: Response) -> None:
        return None

    async def delete_record_response(self, response: Response) -> None:
        return None

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        records = await _records(dataset.id)
        out: dict[str, int] = {"total": len(records)}
        for r in records:
            key = str(_value(r.status))
            out[key] = out.get(key, 0) + 1
        return out

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        records = await _records(dataset.id)
        out: dict[str, int] = {"total": 0}
        for r in records:
            for resp in _responses(r, user):
                key = str(_value(resp.status))
                out[key] = out.get(key, 0) + 1
                out["total"] += 1
        return out

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: str | None = None,
    ) -> SearchResponses:
        scored = []
        for record in await _records(dataset.id):
            if filter is not None and not _matches(record, filter):
                continue
            score = _text(record, query)
            if score is not None:
                scored.append((record, score))
        if user_id and not sort:
            # Argilla shows each annotator the queue in a different but stable order.
            random.Random(str(user_id)).shuffle(scored)
        for order in reversed(sort or []):
            scored.sort(
                key=lambda rs, o=order: _sort_key(rs[0], o),
                reverse=order.order == SortOrder.desc,
            )
        page = scored[offset : offset + limit]
        return SearchResponses(
            items=[SearchResponseItem(record_id=r.id, score=s) for r, s in page],
            total=len(scored),
        )

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        records = await _records(metadata_property.dataset_id)
        values = [(r.metadata_ or {}).get(metadata_property.name) for r in records]
        values = [v for v in values if v is not None]
        kind = _value(metadata_property.type)
        if kind == "terms":
            counts: dict[str, int] = {}
            for v in values:
                for t in v if isinstance(v, list) else [v]:
                    counts[str(t)] = counts.get(str(t), 0) + 1
            return TermsMetrics(
                total=len(counts),
                values=[TermsMetrics.TermCount(term=t, count=n) for t, n in counts.items()],
            )
        cls = IntegerMetadataMetrics if kind == "integer" else FloatMetadataMetrics
        return cls(min=min(values) if values else None, max=max(values) if values else None)

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        # distill's review datasets have no vectors.
        return SearchResponses(items=[], total=0)


SearchEngine.register(NAME)(SQLiteSearchEngine)
