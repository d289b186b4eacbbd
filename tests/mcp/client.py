"""A real MCP client (the Python `mcp` SDK) driving oncall for tests/mcp.rs.

Reads a plan from stdin (JSON):
  {"transport": "stdio", "command": [...], "env": {...}}   or
  {"transport": "http", "url": "...", "token": "..."}
  plus "steps": [{"op": "list_tools"} | {"op": "call", "tool": ..., "args": {...}}
                 | {"op": "list_resources"} | {"op": "read", "uri": ...}]
and prints one JSON document: the result of each step, in order. A step that fails records
{"error": "..."} and the plan goes on.
"""

import asyncio
import contextlib
import json
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run(plan):
    async with contextlib.AsyncExitStack() as stack:
        if plan["transport"] == "stdio":
            cmd = plan["command"]
            params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=plan.get("env") or {})
            streams = await stack.enter_async_context(stdio_client(params))
        else:
            http = create_mcp_http_client(headers={"Authorization": "Bearer " + plan["token"]})
            await stack.enter_async_context(http)
            streams = await stack.enter_async_context(streamable_http_client(plan["url"], http_client=http))
        read, write = streams[0], streams[1]
        session = await stack.enter_async_context(ClientSession(read, write))
        init = await session.initialize()
        out = [{"initialized": dump(init)}]
        for step in plan["steps"]:
            try:
                op = step["op"]
                if op == "list_tools":
                    out.append(dump(await session.list_tools()))
                elif op == "call":
                    progress = []

                    async def on_progress(p, total, message, progress=progress):
                        progress.append({"progress": p, "message": message})

                    r = await session.call_tool(step["tool"], step.get("args") or {}, progress_callback=on_progress)
                    d = dump(r)
                    d["progress"] = progress
                    out.append(d)
                elif op == "list_resources":
                    out.append(dump(await session.list_resources()))
                elif op == "read":
                    out.append(dump(await session.read_resource(step["uri"])))
                else:
                    out.append({"error": f"unknown op {op}"})
            except Exception as e:  # the test reads what went wrong
                out.append({"error": f"{type(e).__name__}: {e}"})
        return out


if __name__ == "__main__":
    result = asyncio.run(run(json.load(sys.stdin)))
    json.dump(result, sys.stdout)
