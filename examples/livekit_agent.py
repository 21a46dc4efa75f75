"""LiveKit agent whose MCP tools reach your server through headgate.

The agent never holds the user's token. Your backend, when it dispatches the
agent to a room, registers the user's token with headgate under the room
name:

    PUT http://headgate-admin:9090/sessions/<room name>
    {"call": {"metadata": {"token": "<the user's token>"}}}

and the agent sends only the room name (X-Session-Id) and the static route
key. headgate injects `Authorization: Bearer <token>` per session (route:
templates/examples/livekit-mcp.toml).

    pip install "livekit-agents[openai]"
    HEADGATE_URL=https://headgate.example.com/crm HEADGATE_ROUTE_KEY=... python livekit_agent.py dev
"""
import os

from livekit.agents import Agent, AgentSession, JobContext, WorkerOptions, cli, mcp
from livekit.plugins import openai


async def entrypoint(ctx: JobContext):
    await ctx.connect()
    crm = mcp.MCPServerHTTP(
        url=os.environ["HEADGATE_URL"],
        headers={
            # Which session's credentials to inject: the room this job serves.
            "X-Session-Id": ctx.room.name,
            # Static: proves the caller is your agent, not anyone on the internet.
            "x-headgate-key": os.environ["HEADGATE_ROUTE_KEY"],
        },
    )
    session = AgentSession(llm=openai.realtime.RealtimeModel(), mcp_servers=[crm])
    await session.start(agent=Agent(instructions="Help the caller with their account."), room=ctx.room)


if __name__ == "__main__":
    cli.run_app(WorkerOptions(entrypoint_fnc=entrypoint))
