"""Saved views of the order list: a name and the list's filters, sort and search, shared by the whole team.

``GET /views`` lists them (by name); ``POST /views`` saves one; ``PUT /views/{id}`` renames or changes it;
``DELETE /views/{id}`` removes it. The gateway owns them (table ``gateway.saved_views``): no service holds
anything about how staff like to look at their orders. A view's ``query`` is checked against the orders
contract's ``OrderQuery`` when it is saved (a stage or filter the list does not know is a 422 naming the field,
``query.stage``), so picking a saved view always gives a list the API accepts. The page cursor and the page size
are not part of a view.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import Path, Request
from fastapi.responses import Response
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from services.gateway.auth import Principal
from services.gateway.problems import problem_responses
from services.gateway.routing import MUTATION_PROBLEMS, READ_PROBLEMS, Caller, api_router
from services.gateway.state import gateway
from services.orders.contracts.schemas import OrderQuery
from shared.errors import InvalidRequest, NotFound, field_error, field_errors

router = api_router()
TAGS: list[Any] = ["views"]

VIEW_FIELDS = frozenset(OrderQuery.model_fields) - {"cursor", "limit"}
"""What a view may hold: the order list's query parameters but the page position and size."""

MAX_VIEWS = 200

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
ViewId = Annotated[uuid.UUID, Path(description="The saved view's id.")]


def _canonical_query(raw: dict[str, Any]) -> dict[str, Any]:
    """The query as the order list takes it (its own JSON form, defaults left out), or a 422 naming the field."""
    unknown = sorted(set(raw) - VIEW_FIELDS)
    if unknown:
        raise InvalidRequest(
            "A view holds the order list's filters, sort and search only.",
            errors=[field_error(f"query.{k}", f"not a filter of the order list ({', '.join(sorted(VIEW_FIELDS))})",
                                "unknown_filter") for k in unknown],
        )
    try:
        query = OrderQuery.model_validate(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        for e in errors:
            e["field"] = f"query.{e['field']}" if e["field"] else "query"
        raise InvalidRequest("The view's filters are not ones the order list accepts.", errors=errors) from None
    return query.model_dump(mode="json", exclude_defaults=True, exclude={"cursor", "limit"})


class SaveView(BaseModel):
    """A view to save: its name and the order list's query parameters (as ``GET /orders`` takes them)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    query: dict[str, Any] = Field(default_factory=dict, description="Filters, sort and search, e.g. "
                                  '`{"stage": ["placed"], "payment_status": ["unpaid"], "sort": "placed_at"}`.')

    @field_validator("query")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > len(VIEW_FIELDS):
            raise ValueError("too many filters")
        return value


class SavedView(BaseModel):
    id: uuid.UUID
    name: str
    query: dict[str, Any]
    created_by: str
    updated_by: str
    created_at: datetime
    updated_at: datetime


class SavedViewList(BaseModel):
    items: list[SavedView]


_COLUMNS = "id, name, query, created_by, updated_by, created_at, updated_at"


def _name_taken(name: str) -> InvalidRequest:
    return InvalidRequest(f"There is already a view called {name!r}.",
                          errors=[field_error("name", "another view has this name", "name_taken")])


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json().encode(), status_code=status, media_type="application/json")


def _who(caller: Principal) -> str:
    return caller.name


@router.get("/views", response_model=SavedViewList, tags=TAGS, responses=READ_PROBLEMS,
            summary="The team's saved views of the order list, by name")
async def list_views(request: Request) -> Response:
    async with gateway(request).pool.connection() as conn:  # type: ignore[union-attr]
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT {_COLUMNS} FROM gateway.saved_views ORDER BY lower(name), id LIMIT %s",
                          (MAX_VIEWS,))
        rows = await cur.fetchall()
    return _json(SavedViewList(items=[SavedView.model_validate(r) for r in rows]))


@router.post("/views", status_code=201, response_model=SavedView, tags=TAGS, responses=MUTATION_PROBLEMS,
             summary="Save a view of the order list for the whole team")
async def create_view(request: Request, body: SaveView, caller: Caller) -> Response:
    query = _canonical_query(body.query)
    who = _who(caller)
    try:
        async with gateway(request).pool.connection() as conn:  # type: ignore[union-attr]
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT count(*) AS n FROM gateway.saved_views")
            row = await cur.fetchone()
            if row is not None and row["n"] >= MAX_VIEWS:
                raise InvalidRequest(f"The team has {MAX_VIEWS} views already: delete one first.",
                                     errors=[field_error("name", f"at most {MAX_VIEWS} views", "too_many")])
            await cur.execute(
                f"INSERT INTO gateway.saved_views (id, name, query, created_by, updated_by) "
                f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (uuid.uuid4(), body.name, psycopg.types.json.Jsonb(query), who, who),
            )
            saved = await cur.fetchone()
    except psycopg.errors.UniqueViolation:
        raise _name_taken(body.name) from None
    response = _json(SavedView.model_validate(saved), 201)
    response.headers["Location"] = f"{request.url.path}/{saved['id']}" if saved else ""
    return response


@router.put("/views/{view_id}", response_model=SavedView, tags=TAGS, responses=MUTATION_PROBLEMS,
            summary="Rename a saved view or change its filters")
async def update_view(request: Request, view_id: ViewId, body: SaveView, caller: Caller) -> Response:
    query = _canonical_query(body.query)
    try:
        async with gateway(request).pool.connection() as conn:  # type: ignore[union-attr]
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"UPDATE gateway.saved_views SET name = %s, query = %s, updated_by = %s, updated_at = now() "
                f"WHERE id = %s RETURNING {_COLUMNS}",
                (body.name, psycopg.types.json.Jsonb(query), _who(caller), view_id),
            )
            saved = await cur.fetchone()
    except psycopg.errors.UniqueViolation:
        raise _name_taken(body.name) from None
    if saved is None:
        raise NotFound(f"No saved view {view_id}.", view_id=str(view_id))
    return _json(SavedView.model_validate(saved))


@router.delete("/views/{view_id}", status_code=204, tags=TAGS, responses=problem_responses(401, 403, 404, 500),
               summary="Delete a saved view (for the whole team)")
async def delete_view(request: Request, view_id: ViewId, caller: Caller) -> Response:
    async with gateway(request).pool.connection() as conn:  # type: ignore[union-attr]
        cur = await conn.execute("DELETE FROM gateway.saved_views WHERE id = %s", (view_id,))
        deleted = cur.rowcount
    if not deleted:
        raise NotFound(f"No saved view {view_id}.", view_id=str(view_id))
    return Response(status_code=204)


ROUTERS = (router,)
