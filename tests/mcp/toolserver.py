"""A small MCP server (the Python `mcp` SDK) for tests/mcp.rs: an external toolset oncall's agent
uses. `queue_depth` answers with a queue depth and, to prove redaction, a password; each call
appends the queue's name to CALLS_FILE. `purge_queue` is marked destructive by the server
itself. `stall` answers late (a slow server).

Usage: toolserver.py CALLS_FILE            (stdio)
       toolserver.py CALLS_FILE http PORT  (Streamable HTTP at /mcp)
"""

import json
import sys

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("queues")
CALLS = sys.argv[1]


@server.tool()
def queue_depth(queue: str) -> str:
    """Messages waiting in a queue of the broker, and its consumers."""
    with open(CALLS, "a") as f:
        f.write(queue + "\n")
    return json.dumps({"queue": queue, "depth": 48210, "consumers": 0,
                       "broker_url": "amqp://app:hunter2secret@mq:5672"})


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
def purge_queue(queue: str) -> str:
    """Drops every message of a queue (the server itself says it is destructive)."""
    with open(CALLS, "a") as f:
        f.write("PURGED " + queue + "\n")
    return "purged"


@server.tool()
async def stall(seconds: float) -> str:
    """Answers after the given number of seconds (a slow dependency)."""
    import anyio
    await anyio.sleep(seconds)
    return "late"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "http":
        server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[3]))
    else:
        server.run()
