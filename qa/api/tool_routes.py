"""The MCP tools for chat applications that register functions instead of speaking MCP.

GET /tools lists them as OpenAI-style function definitions, derived from the MCP server's
own tool listing (one definition, two protocols); POST /tools/{name} runs one with the
arguments the model chose, through the very same code path as an MCP ``tools/call``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from qa.api.errors import field_message
from qa.api.routes import BODY_ERRORS, UNAVAILABLE
from qa.errors import InvalidRequest, NotFound, QAError
from qa.service.schemas import ErrorResponse

router = APIRouter()

_EXAMPLES = {
    "search_passages": {"summary": "search_passages", "value": {"query": "武汉有多少名院士?",
                                                                 "top_k": 3}},
    "search_passages_en": {"summary": "search_passages (English)",
                           "value": {"query": "How many academicians does Wuhan have?"}},
    "get_passage": {"summary": "get_passage",
                    "value": {"doc_id": "wuhan-9th-plenary-digest-2020-06-28", "paragraph": 3}},
    "list_documents": {"summary": "list_documents", "value": {}},
}


def _server(request: Request) -> MCPServer:
    return request.app.state.mcp


def _domain_error(name: str, exc: ToolError) -> QAError:
    """Back from the SDK's ToolError to the error the tool raised, so HTTP gets its status."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, QAError):
            return cause
        if isinstance(cause, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'arguments'}: {field_message(e)}"
                for e in cause.errors()[:5])
            return InvalidRequest(f"bad arguments for {name}: {problems}")
        cause = cause.__cause__
    if str(exc).startswith("Unknown tool"):
        return NotFound(f"unknown tool {name!r}; GET /tools lists them")
    return QAError(f"the tool {name} failed; the server log has the details")


@router.get("/tools", operation_id="list_tools", tags=["tools"],
            summary="The tools as OpenAI-style function definitions")
async def list_tools(request: Request) -> list[dict[str, Any]]:
    """`[{"type": "function", "function": {"name", "description", "parameters"}}]` for a
    chat application to register: the same tools, descriptions and JSON Schemas as the
    MCP server at /mcp. Run one with POST /tools/{name}."""
    from qa.mcp.server import function_definitions  # it builds on qa.api: no import cycle

    return await function_definitions(_server(request))


@router.post("/tools/{name}", operation_id="call_tool", tags=["tools"],
             summary="Run a tool with the arguments a model chose",
             responses={**BODY_ERRORS,
                        404: {"model": ErrorResponse, "description": "Unknown tool or "
                                                                     "document."},
                        422: {"model": ErrorResponse, "description": "Bad arguments."},
                        503: UNAVAILABLE})
async def call_tool(
    request: Request,
    name: Annotated[str, Path(description="A tool name from GET /tools.",
                              examples=["search_passages"])],
    arguments: Annotated[dict[str, Any] | None, Body(openapi_examples=_EXAMPLES)] = None,
) -> dict[str, Any]:
    """The tool's structured result, exactly what an MCP client gets as
    `structuredContent`: for search_passages the same JSON as POST /search."""
    try:
        result = await _server(request).call_tool(name, arguments or {})
    except ToolError as exc:
        raise _domain_error(name, exc) from exc
    return dict(getattr(result, "structured_content", None) or {})
