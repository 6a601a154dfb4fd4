"""docqa as a Model Context Protocol server: the tools ``search``, ``ask``, ``list_kbs`` and ``get_document``.

Two transports, one set of tools:
- streamable HTTP at ``/mcp`` under ``docqa serve`` (stateless, JSON replies): the caller is the holder of the
  request's ``Authorization: Bearer <key>``, exactly as for the HTTP API (loopback-only mode without keys);
- stdio (``docqa mcp``), for an MCP client that starts docqa itself: the caller is the key in
  ``DOCQA_API_KEY`` (``--key-env``), or, when the home has no API keys, the local admin.

Each tool calls the HTTP route's own function with that caller, so a tool can do exactly what the key may do
over HTTP and sees only the KBs and documents the key's groups allow; a refusal or a bad argument is a tool
error whose text is the API's message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from pydantic import Field, ValidationError

log = logging.getLogger("docqa.mcp")

INSTRUCTIONS = ("docqa answers questions from an organisation's own documents (Chinese and English) with numbered "
                "citations, and says when the documents do not hold the answer. Use `ask` for an answer with its "
                "sources, `search` for the passages themselves, `list_kbs` to see which knowledge bases you may "
                "use, and `get_document` to read a cited document whole.")


def build_server(registry, slots, caller_of: Callable[[Any], Any]):
    """The MCP server over ``registry``; ``caller_of(ctx)`` gives the ``Caller`` of a tool call (or raises
    ``ApiError``). Its streamable HTTP app serves at ``/mcp``."""
    import anyio
    from mcp.server.transport_security import TransportSecuritySettings

    from docqa.errors import UserError
    from docqa.kb.manifest import KBDamaged
    from service.compliance.review import new_request_id
    from service.errors import ApiError
    from service.registry import BrokenKB, KBNotNamed, UnknownKB
    from service.routes import chat as chat_route
    from service.routes import documents as doc_routes
    from service.routes import meta as meta_routes
    from service.routes import search as search_routes
    from service.schemas import ChatRequest, SearchRequest

    # Host checks are docqa's job (keys; loopback-only mode refuses relayed requests), not the SDK's: its
    # DNS-rebinding guard would refuse every Host but localhost on a server bound to a network address.
    server = FastMCP("docqa", instructions=INSTRUCTIONS, stateless_http=True, json_response=True,
                     streamable_http_path="/mcp",
                     transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    async def call(ctx: Context, fn: Callable[[Any], Any]) -> Any:
        try:
            caller = caller_of(ctx)
            return await anyio.to_thread.run_sync(lambda: fn(caller))
        except ApiError as e:
            raise ToolError(e.message) from None
        except ValidationError as e:
            err = e.errors()[0]
            raise ToolError(f"{'.'.join(str(x) for x in err['loc']) or 'arguments'}: {err['msg']}") from None
        except (UnknownKB, KBNotNamed, BrokenKB, KBDamaged, UserError) as e:
            raise ToolError(str(e)) from None

    @server.tool(description="The KB passages that best match a query (hybrid dense + keyword retrieval), each "
                             "with its document, pinpoint label (e.g. 第十九条) and page. Only documents the key "
                             "may read.")
    async def search(query: Annotated[str, Field(description="what to look for")], ctx: Context,
                     kb: Annotated[str | None, Field(description="knowledge base (list_kbs); optional when the "
                                                                 "server has one")] = None,
                     k: Annotated[int, Field(ge=1, le=100, description="how many passages")] = 5,
                     mode: Literal["hybrid", "dense", "keyword"] = "hybrid",
                     filters: Annotated[dict | None, Field(description='metadata filters, e.g. {"department": '
                                                                       '"hr"}')] = None) -> dict:
        def run(caller):
            req = SearchRequest(query=query, kb=kb, k=k, mode=mode, filters=filters)
            return search_routes.search_route(req, registry, caller)

        return await call(ctx, run)

    @server.tool(description="Answer a question from the documents: the answer with [n] citations and the cited "
                             "passages, or a refusal when the documents do not say (refused: true). The "
                             "compliance filter applies as for every answer.")
    async def ask(question: Annotated[str, Field(description="the question, as a user would ask it")], ctx: Context,
                  kb: Annotated[str | None, Field(description="knowledge base (list_kbs)")] = None,
                  history: Annotated[list[dict] | None, Field(description="earlier turns: [{role, content}]")]
                  = None) -> dict:
        def run(caller):
            req = ChatRequest(question=question, kb=kb, history=history or [])
            return chat_route.chat(req, registry, new_request_id(), caller, slots)

        return await call(ctx, run)

    @server.tool(description="The knowledge bases this key may use, with their document and unit counts.")
    async def list_kbs(ctx: Context) -> dict:
        return await call(ctx, lambda caller: meta_routes.kbs(registry, caller))

    @server.tool(description="One document of a KB: its title, metadata and whole parsed text (doc_id from a "
                             "citation or a search hit).")
    async def get_document(kb: Annotated[str, Field(description="knowledge base")],
                           doc_id: Annotated[str, Field(description="the document's id")], ctx: Context) -> dict:
        def run(caller):
            from service.auth.access import Role, kb_for

            return doc_routes.get_document(kb_for(registry, caller, kb, Role.READER), doc_id, caller)

        return await call(ctx, run)

    return server


def http_caller(store, settings):
    """``caller_of`` for streamable HTTP: the request's Bearer key (``service.auth.access.caller_for``)."""
    from service.auth.access import caller_for

    def caller_of(ctx):
        request = ctx.request_context.request
        if request is None:
            raise RuntimeError("an MCP call over HTTP without its request")
        return caller_for(store, settings, request.headers)

    return caller_of


def mount(app, server, store, settings) -> None:
    """Serve ``server`` at ``/mcp`` of the FastAPI ``app`` (its session manager runs in docqa's lifespan). A
    request that may not call at all (no key, a bad one) is refused at the door with the API's status and
    message, before the MCP session sees it; each tool call then acts as the key's holder."""
    from mcp.server.fastmcp.server import StreamableHTTPASGIApp
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from service.auth.access import caller_for
    from service.errors import ApiError, error_body

    server.streamable_http_app()  # creates the session manager
    inner = StreamableHTTPASGIApp(server.session_manager)

    class Guarded:  # an ASGI app (an instance, not a function: Starlette then passes scope, receive, send)
        async def __call__(self, scope, receive, send) -> None:
            try:
                caller_for(store, settings, Request(scope).headers)
            except ApiError as e:
                await JSONResponse(error_body(e.status, e.message, e.type), status_code=e.status,
                                   headers=e.headers)(scope, receive, send)
                return
            await inner(scope, receive, send)

    app.router.routes.append(Route("/mcp", endpoint=Guarded(), methods=["GET", "POST", "DELETE"],
                                   include_in_schema=False))
